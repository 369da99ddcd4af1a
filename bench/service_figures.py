"""The service benchmark's figures, from the job rows of a scenario: latency, waiting, throughput, the batch
sizes the jobs' overlap shows, the queue's length, and the engine's own rate at those batch sizes as the
ceiling.

Batch sizes come from the rows: a job counts as running from its ``started_at`` (its claim) to its
``finished_at``, so a moment with k jobs of one size running is a moment of a batch of k. Where jobs of two
sizes run at once (the mixed stream) the GPU is shared between two batches; their ceiling is the engine's
rate for running them in turns: (k1 + k2) job steps take k1 / r1(k1) + k2 / r2(k2) seconds.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from bench.service_scenarios import Run, Seen
from db import JobState

LOG_BATCH = re.compile(r"batch of (\d+)")
State = tuple[tuple[str, int], ...]  # ((size, jobs running), ...), sorted, sizes with jobs only
MIN_SHARE = 0.02


def spread(values: list[float]) -> dict[str, float | int | None]:
    """mean, p50, p95, max (linear between order statistics), and how many values."""
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def quantile(q: float) -> float:
        where = q * (len(ordered) - 1)
        low = int(where)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (where - low)

    return {"n": len(ordered), "mean": round(sum(ordered) / len(ordered), 3), "p50": round(quantile(0.5), 3),
            "p95": round(quantile(0.95), 3), "max": round(ordered[-1], 3)}


def first_step_at(seen: Seen) -> float | None:
    """When the job's first step ran (Unix s): its first progress seen, less the steps before it at the job's
    rate between its first two progress reports (with one report only, the time of that report), and never
    before its claim."""
    if seen.first_progress_at is None:
        return None
    at = seen.first_progress_at
    if seen.later_progress is not None:
        later_at, later_step = seen.later_progress
        rate = (later_step - seen.first_progress_step) / max(later_at - at, 1e-9)
        at -= (seen.first_progress_step - 1) / rate
    started = seen.final.started_at.timestamp() if seen.final is not None and seen.final.started_at else None
    return max(at, started) if started is not None else at


def occupancy(run: Run) -> dict[State, float]:
    """Seconds spent in each state of running jobs, from the first submission to the scenario's end."""
    events: list[tuple[float, str, int]] = []
    for s in run.seen:
        job = s.final
        if job is None or job.started_at is None:
            continue
        end = job.finished_at.timestamp() if job.finished_at is not None else run.ended_at
        events += [(job.started_at.timestamp(), s.size, 1), (end, s.size, -1)]
    events.sort()
    running: Counter[str] = Counter()
    spent: dict[State, float] = defaultdict(float)
    now = run.started_at
    for at, size, delta in events:
        at = min(max(at, run.started_at), run.ended_at)
        spent[tuple(sorted((k, v) for k, v in running.items() if v > 0))] += at - now
        now = at
        running[size] += delta
    spent[()] += max(run.ended_at - now, 0.0)
    return dict(spent)


def queue_lengths(run: Run) -> dict[str, int]:
    """The longest queue (jobs submitted and not yet claimed or ended) and its length when submissions stopped."""
    events: list[tuple[float, int]] = []
    for s in run.seen:
        events.append((s.submitted_at, 1))
        left = (s.final.started_at or s.final.finished_at) if s.final is not None else None
        if left is not None:
            events.append((left.timestamp(), -1))
    events.sort(key=lambda e: (e[0], -e[1]))
    length = longest = at_stop = 0
    for at, delta in events:
        length += delta
        longest = max(longest, length)
        if at <= run.last_submit_at:
            at_stop = length
    return {"max_queued": longest, "queued_when_submissions_stopped": at_stop}


def batch_sizes(spent: dict[State, float]) -> dict[str, dict[str, float]]:
    """Per picture size: seconds with k jobs of it running, for each k seen."""
    sizes: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for state, seconds in spent.items():
        for size, jobs in state:
            sizes[size][str(jobs)] += seconds
    return {size: {k: round(v, 2) for k, v in sorted(ks.items(), key=lambda kv: int(kv[0]))}
            for size, ks in sorted(sizes.items())}


def log_batch_sizes(lines: list[tuple[float, str]], start: float, end: float) -> dict[str, int]:
    """Batches the worker's log announced between two moments (monotonic), by size ("batch of N")."""
    counts: Counter[int] = Counter()
    for seen, line in lines:
        if start <= seen <= end:
            counts.update(int(m.group(1)) for m in LOG_BATCH.finditer(line))
    return {str(k): counts[k] for k in sorted(counts)}


def held(spent: dict[State, float]) -> dict[State, float]:
    """The states of running jobs that held at least MIN_SHARE of the time any job ran (the rest are the
    moments between one job's end and its batch mates', too brief to be a batch size of their own)."""
    busy = sum(seconds for state, seconds in spent.items() if state)
    return {state: seconds for state, seconds in spent.items() if state and seconds >= MIN_SHARE * busy > 0}


def needed_rates(spent: dict[State, float]) -> set[tuple[str, int]]:
    return {pair for state in held(spent) for pair in state}


def ceiling(spent: dict[State, float], rates: dict[tuple[str, int], float]) -> float | None:
    """The engine's total steps/s at the batch sizes the service held, averaged over the time they were held."""
    total = seconds_in = 0.0
    for state, seconds in held(spent).items():
        if any(pair not in rates for pair in state):
            return None
        per_step = sum(jobs / rates[(size, jobs)] for size, jobs in state)
        total += seconds * sum(jobs for _, jobs in state) / per_step
        seconds_in += seconds
    return total / seconds_in if seconds_in > 0 else None


def scenario_figures(run: Run, log_lines: list[tuple[float, str]], log_window: tuple[float, float]) -> dict[str, Any]:
    """Everything but the ceiling (that needs the engine's rates, measured after the worker stopped)."""
    done = [s for s in run.seen if s.final is not None and s.final.state is JobState.SUCCEEDED
            and s.final.finished_at is not None and s.final.finished_at.timestamp() <= run.ended_at]
    started = [s for s in run.seen if s.final is not None and s.final.started_at is not None]
    firsts = [(s, first_step_at(s)) for s in started]
    wall = max(run.ended_at - run.started_at, 1e-9)
    spent = occupancy(run)
    busy = sum(seconds for state, seconds in spent.items() if state)
    steps_done = sum(s.steps for s in done)
    return {
        "description": run.scenario.description,
        "jobs": len(run.seen),
        "succeeded": len(done),
        "cancelled_by_bench": sum(s.cancelled_by_bench for s in run.seen),
        "latency_s": spread([s.final.finished_at.timestamp() - s.submitted_at for s in done
                             if s.final is not None and s.final.finished_at is not None]),
        "wait_to_claim_s": spread([s.final.started_at.timestamp() - s.submitted_at for s in started
                                   if s.final is not None and s.final.started_at is not None]),
        "wait_to_first_step_s": spread([at - s.submitted_at for s, at in firsts if at is not None]),
        "wall_s": round(wall, 2),
        "submitting_s": round(run.last_submit_at - run.started_at, 2),
        "cancelled_at_s": round(run.cancel_at - run.started_at, 2) if run.cancel_at is not None else None,
        "throughput_steps_per_s": round(steps_done / wall, 2),
        "busy_fraction": round(busy / wall, 3),
        "batch_sizes_s": batch_sizes(spent),
        "batch_mean": round(sum(seconds * sum(j for _, j in state) for state, seconds in spent.items()) / busy, 2)
        if busy > 0 else None,
        "log_batches": log_batch_sizes(log_lines, *log_window),
        **queue_lengths(run),
        "stuck": run.stuck,
    }


def with_ceiling(figures: dict[str, Any], run: Run, rates: dict[tuple[str, int], float]) -> dict[str, Any]:
    top = ceiling(occupancy(run), rates)
    figures["ceiling_steps_per_s"] = round(top, 2) if top is not None else None
    figures["fraction_of_ceiling"] = round(figures["throughput_steps_per_s"] / top, 3) if top else None
    return figures
