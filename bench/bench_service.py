"""Service benchmark: what a user waits for, with a real `vqbot worker` process and a real queue.

A real ``python -m vqbot_cli.main worker`` (of this checkout, or of ``--worker-repo``), configured only
through environment variables and compiling as in production (``VQBOT_COMPILE=auto``: CUDA graphs on
CUDA), serves a real queue (``--database``: a SQLite file by default, or any spec the worker accepts).
Jobs go in through the store from this process, as the bot submits them. The models are the real
architectures (VQGAN f16 16384, CLIP ViT-B/32) with random weights, written in the real file formats.

Scenarios (512x512, 32 cutouts, 500 steps by default):
  burst     8 jobs at once from 4 guilds
  stream2   one job every 2 s for 60 s
  stream05  one job every 0.5 s for 60 s (overload: submissions stop at 60 s, measuring at the limit,
            then what is left is cancelled)
  mixed     one job every 2 s for 60 s, 512x512 and 256x256 in turn

For each: seconds from submit to finished picture, seconds waiting before the first step, useful
throughput (job steps finished per second of wall time), the batch sizes seen, and the engine's own
batched rate at those batch sizes (bench/bench_engine.py's timing, run here after the worker stopped)
as the ceiling. Also: worker start to ready (cold, and with ``--restart`` again with the compile cache
warm) and a lone job on an idle ready worker. A table, then one JSON line of every figure.

    python bench/bench_service.py                              # everything, on CUDA
    python bench/bench_service.py --scenarios burst,stream2    # a part (GPU commands have time limits)
    python bench/bench_service.py --worker-repo /tmp/old       # drive an older checkout's worker
    python bench/bench_service.py --tiny                       # the test models on the CPU, in seconds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_table import print_table
from bench.service_worker import (
    READY_PATTERN,
    REPO,
    ModelFiles,
    WorkerLaunch,
    WorkerProcess,
    cache_is_empty,
    write_models,
)

if TYPE_CHECKING:  # imported in main, once it is known whose db/ and jobspec/ to use (see store_code_of)
    from bench.service_scenarios import Run, Scenario, Watcher, Workload

T0 = time.monotonic()
STORE_PACKAGES = ("db", "jobspec")
SCENARIOS = ("burst", "stream2", "stream05", "mixed")
# (full run, --tiny): what each option is when not given
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "size": (512, 32), "other_size": (256, 48), "steps": (500, 12), "cutn": (32, 2), "duration": (60.0, 1.0),
    "burst_jobs": (8, 8), "stream_every": (2.0, 0.5), "overload_every": (0.5, 0.1), "mixed_every": (2.0, 0.5),
    # Overload: the queue only grows, and draining it would take ~10 minutes of GPU time. Two minutes
    # past the last submission keeps the card saturated for three minutes in all, several whole batch
    # lifetimes (a 512x512 batch of 8 lives about a minute), so the throughput is a steady-state figure;
    # the latencies are those of the jobs that finished (the earliest), a lower bound.
    "overload_limit": (120.0, 2.0),
    "drain_limit": (600.0, 30.0), "cancel_grace": (60.0, 20.0), "ready_timeout": (1200.0, 120.0),
    "ceiling_steps": (60, 3), "poll": (0.05, 0.05),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the test models on the CPU, small and short")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--size", type=int, help="picture side (512; tiny 32)")
    parser.add_argument("--other-size", type=int, help="the mixed stream's other side (256; tiny 48)")
    parser.add_argument("--steps", type=int, help="steps a job (500; tiny 12: the worker reports progress every 10)")
    parser.add_argument("--cutn", type=int, help="cutouts (32; tiny 2)")
    parser.add_argument("--duration", type=float, help="seconds the streams submit for (60; tiny 1)")
    parser.add_argument("--burst-jobs", type=int, help="jobs in the burst (8)")
    parser.add_argument("--stream-every", type=float, help="seconds between stream2's jobs (2; tiny 0.5)")
    parser.add_argument("--overload-every", type=float, help="seconds between stream05's jobs (0.5; tiny 0.1)")
    parser.add_argument("--mixed-every", type=float, help="seconds between the mixed stream's jobs (2; tiny 0.5)")
    parser.add_argument("--overload-limit", type=float,
                        help="seconds after stream05's last submission before what is left is cancelled (120)")
    parser.add_argument("--drain-limit", type=float,
                        help="the same for the other scenarios, which normally drain well before it (600)")
    parser.add_argument("--cancel-grace", type=float, help="seconds for cancelled running jobs to stop (60)")
    parser.add_argument("--ready-timeout", type=float, help="seconds for the worker to say it is ready (1200)")
    parser.add_argument("--ceiling-steps", type=int, help="timed steps for each engine-rate measurement (60)")
    parser.add_argument("--poll", type=float, help="seconds between looks at the store and the log (0.05)")
    parser.add_argument("--restart", action="store_true", help="then restart the worker with the compile cache warm")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the engine-rate measurement")
    parser.add_argument("--worker-repo", type=Path, default=REPO, help="the checkout whose worker runs (cwd and PYTHONPATH)")
    parser.add_argument("--python", default=sys.executable, help="the worker's interpreter")
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                        help="another setting for the worker (repeatable), e.g. VQBOT_MAX_BATCH=8")
    parser.add_argument("--device", help="VQBOT_DEVICE for the worker and the ceiling (auto; tiny cpu)")
    parser.add_argument("--compile", default="auto", help="VQBOT_COMPILE for the worker (auto, as in production)")
    parser.add_argument("--ready-pattern", default=READY_PATTERN, help="regex of the worker's ready line")
    parser.add_argument("--database", help="queue spec for the worker and the store (default: a fresh SQLite file)")
    parser.add_argument("--work-dir", type=Path, help="models, compile cache, queue and log (default: a new temp folder);"
                        " reuse it to keep the written models and the compile cache")
    parser.add_argument("--log", type=Path, help="the worker's log (default: WORK_DIR/worker.log)")
    args = parser.parse_args(argv)
    for name, (full, tiny) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if any("=" not in kv for kv in args.worker_env):
        parser.error("--worker-env takes KEY=VALUE")
    args.device = args.device or ("cpu" if args.tiny else "auto")
    return args


def say(text: str) -> None:
    """A progress line, with the seconds since the benchmark began."""
    print(f"[{time.monotonic() - T0:6.1f} s] {text}", flush=True)


def resolved_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolved_compile(compile_setting: str, device: str) -> str:
    """What the worker's ``auto`` means (engine/runner.py): CUDA graphs on CUDA, none elsewhere."""
    if compile_setting == "auto":
        return "reduce-overhead" if device.startswith("cuda") else "none"
    return compile_setting


def store_code_of(repo: Path) -> dict[str, ModuleType]:
    """Submit through the worker's checkout's db/ and jobspec/, as its own bot would: its queue schema and its
    job parameters (an older worker refuses a database that a newer db/ made). Returns this checkout's
    modules of those packages that were imported already, for back_to_this_checkout."""
    if repo == REPO:
        return {}
    sys.path.insert(0, str(repo))
    mine = {name: module for name, module in sys.modules.items() if name.split(".")[0] in STORE_PACKAGES}
    for name in mine:
        del sys.modules[name]
    return mine


def back_to_this_checkout(repo: Path, mine: dict[str, ModuleType]) -> None:
    """This checkout's db/ and jobspec/ again (for the ceiling, measured with this checkout's engine)."""
    if repo == REPO:
        return
    sys.path.remove(str(repo))
    for name in [name for name in sys.modules if name.split(".")[0] in STORE_PACKAGES]:
        del sys.modules[name]
    sys.modules.update(mine)


def scenarios(args: argparse.Namespace, work: Workload) -> list[Scenario]:
    from bench.service_scenarios import burst, stream

    made = {
        "burst": lambda: burst(work, args.burst_jobs, args.drain_limit),
        "stream2": lambda: stream("stream2", work, args.stream_every, args.duration, args.drain_limit),
        "stream05": lambda: stream("stream05", work, args.overload_every, args.duration, args.overload_limit),
        "mixed": lambda: stream("mixed", work, args.mixed_every, args.duration, args.drain_limit, mixed=True),
    }
    return [made[name]() for name in args.scenarios]


async def open_store(spec: str) -> Any:
    """The store a spec names: db.open_store where this checkout has it (SQLite or PostgreSQL), else SQLite."""
    import db

    opener = getattr(db, "open_store", None)
    if opener is not None:
        return await opener(spec)
    if "://" in spec:
        raise SystemExit(f"this checkout's db/ opens SQLite files only, not {spec.split('://')[0]}:// URLs")
    return await db.SqliteStore.open(Path(spec))


@dataclass
class Served:
    """What the worker's runs gave, before the ceiling."""

    starts: list[dict[str, Any]]
    lone: list[Run]
    runs: list[Run]
    figures: dict[str, dict[str, Any]]


async def one_start(launch: WorkerLaunch, label: str, expects_warm_up: bool, args: argparse.Namespace,
                    store: Any, watcher: Watcher, work: Workload, numbers: list[int],
                    plan: list[Scenario]) -> tuple[dict[str, Any], Run, list[tuple[Run, dict[str, Any]]]]:
    """Start the worker, wait for ready, run a lone job and then ``plan``, stop it."""
    from bench.service_figures import scenario_figures
    from bench.service_scenarios import lone_job, run_scenario

    cold = cache_is_empty(launch.cache_dir)
    worker = WorkerProcess(launch, label, expects_warm_up)
    worker.start()
    results: list[tuple[Run, dict[str, Any]]] = []
    try:
        ready_s = await worker.wait_ready(ready_pattern=args.ready_pattern, timeout_s=args.ready_timeout,
                                          poll_s=args.poll)
        say(f"worker '{label}' ready {ready_s:.1f} s after its start (compile cache {'empty' if cold else 'warm'})")
        alone = await run_scenario(store, watcher, work, lone_job(work, args.drain_limit), first_number=numbers[0],
                                   cancel_grace_s=args.cancel_grace, poll_s=args.poll, check=worker.check_alive)
        numbers[0] += 1
        for scenario in plan:
            say(f"scenario {scenario.name}: {scenario.description} ({len(scenario.arrivals)} jobs)")
            worker.read_log()  # lines are dated when first read: read up to here before the scenario's window
            begun = time.monotonic()
            run = await run_scenario(store, watcher, work, scenario, first_number=numbers[0],
                                     cancel_grace_s=args.cancel_grace, poll_s=args.poll, check=worker.check_alive)
            numbers[0] += len(scenario.arrivals)
            worker.read_log()
            results.append((run, scenario_figures(run, worker.lines, (begun, time.monotonic()))))
    finally:
        rc, stop_s = worker.stop(timeout_s=max(args.cancel_grace, 60.0))
        say(f"worker '{label}' stopped in {stop_s:.1f} s, exit status {rc}")
    start = {"label": label, "compile_cache": "empty" if cold else "warm", "start_to_ready_s": round(ready_s, 2),
             "stop_s": round(stop_s, 2), "exit_status": rc}
    return start, alone, results


async def serve(args: argparse.Namespace, work_dir: Path, models: ModelFiles, compile_mode: str) -> Served:
    from bench.service_scenarios import Watcher, Workload

    database = args.database or str(work_dir / "queue.sqlite3")
    if args.database is None:
        for stale in work_dir.glob("queue.sqlite3*"):
            stale.unlink()
    work = Workload(size=args.size, other_size=args.other_size, steps=args.steps, cutn=args.cutn,
                    clip_model=models.clip_model)
    # --tiny: one CPU thread a process; two processes spinning two OpenMP threads each on a small, shared
    # machine make a tiny step ~20x slower.
    extra: tuple[tuple[str, str], ...] = (("OMP_NUM_THREADS", "1"),) if args.tiny else ()
    extra += tuple((key, value) for key, value in (kv.split("=", 1) for kv in args.worker_env))
    launch = WorkerLaunch(repo=args.worker_repo, python=args.python, database=database, models=models,
                          device=args.device, compile=args.compile, cache_dir=work_dir / "compile-cache",
                          model_dir=work_dir / "model-dir", log_path=args.log or work_dir / "worker.log",
                          extra_env=extra)
    warm_up = compile_mode != "none" and dict(extra).get("VQBOT_WARM_UP", "1") not in ("0", "false", "no", "off")
    say(f"worker log: {launch.log_path}")
    store = await open_store(database)
    watcher = Watcher(store, args.poll)
    await watcher.start()
    numbers = [0]
    try:
        first, alone, results = await one_start(launch, "first", warm_up, args, store, watcher, work, numbers,
                                                scenarios(args, work))
        starts, lone = [first], [alone]
        if args.restart:
            again, alone_again, _ = await one_start(launch, "restart", warm_up, args, store, watcher, work, numbers, [])
            starts.append(again)
            lone.append(alone_again)
    finally:
        await watcher.stop()
        await store.close()
    return Served(starts, lone, [r for r, _ in results], {r.scenario.name: f for r, f in results})


def lone_figures(run: Run) -> dict[str, Any]:
    from bench.service_figures import scenario_figures, spread

    figures = scenario_figures(run, [], (0.0, 0.0))
    pick = lambda key: figures[key]["mean"]  # one job: mean = max = it
    return {"submit_to_claim_s": pick("wait_to_claim_s"), "submit_to_first_step_s": pick("wait_to_first_step_s"),
            "submit_to_first_progress_s": spread([s.first_progress_at - s.submitted_at for s in run.seen
                                                  if s.first_progress_at is not None])["mean"],
            "first_progress_step": run.seen[0].first_progress_step if run.seen else None,
            "latency_s": pick("latency_s"), "succeeded": figures["succeeded"]}


def engine_rates(pairs: set[tuple[str, int]], args: argparse.Namespace, device: str,
                 compile_mode: str) -> dict[tuple[str, int], float]:
    """bench/bench_engine.py's batched rate (total steps/s) for each (size, jobs) the service held."""
    import torch

    from bench.bench_engine import build_models, engine_steps

    dev = torch.device(device)
    if args.tiny:
        torch.set_num_threads(1)  # as the worker had (see serve)
    vqgan, clip = build_models(dev, args.tiny)
    if dev.type == "cuda":  # the worker's weights on CUDA (engine.models.pick_precision's auto)
        vqgan, clip.model = vqgan.to(torch.bfloat16), clip.model.to(torch.bfloat16)
    with torch.no_grad():
        target = clip.encode_text(["a wooden banana temple in an underwater kingdom"])[0]
    rates = {}
    for size, jobs in sorted(pairs, key=lambda p: (p[0], p[1])):
        width, height = (int(side) for side in size.split("x"))
        rate, _ = engine_steps(vqgan, clip, target, jobs=jobs, width=width, height=height, cutn=args.cutn,
                               steps=args.ceiling_steps, device=dev, autocast=None, compile_mode=compile_mode)
        rates[(size, jobs)] = rate
        say(f"engine alone, {size}, {jobs:2d} job(s): {rate:7.1f} steps/s total")
    return rates


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


def commit_of(repo: Path) -> str | None:
    """The checkout's commit, with "-dirty" when its tracked files differ from it; None for a folder that
    is not a checkout's top level (``git archive`` of an old commit: git would name the enclosing one)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True).stdout.strip()

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != repo.resolve():
        return None
    commit = git("rev-parse", "--short", "HEAD")
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "") if commit else None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.worker_repo = args.worker_repo.resolve()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="vqbot-bench-service-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    # This process's own compiles (the ceiling) share the worker's cache, as a restarted worker would.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work_dir / "compile-cache")
    os.environ["TRITON_CACHE_DIR"] = str(work_dir / "compile-cache" / "triton")
    device = resolved_device(args.device)
    compile_mode = resolved_compile(args.compile, device)
    say(f"models in {work_dir}")
    models = write_models(work_dir / ("models-tiny" if args.tiny else "models-real"), tiny=args.tiny)
    mine = store_code_of(args.worker_repo)
    from bench.service_figures import needed_rates, occupancy, with_ceiling
    from bench.service_scenarios import job_outcomes

    served = asyncio.run(serve(args, work_dir, models, compile_mode))
    import db

    store_code = str(Path(db.__file__).resolve().parents[1])
    back_to_this_checkout(args.worker_repo, mine)
    report: dict[str, Any] = {
        "bench": "service", "worker_repo": str(args.worker_repo), "worker_commit": commit_of(args.worker_repo),
        "bench_commit": commit_of(REPO), "store_code": store_code,
        "database": args.database.split("://")[0] if args.database and "://" in args.database else "sqlite",
        "device": args.device, "compile": compile_mode,
        "size": args.size, "other_size": args.other_size, "steps": args.steps, "cutn": args.cutn,
        "duration_s": args.duration, "starts": served.starts, "lone_job": [lone_figures(r) for r in served.lone],
        "scenarios": served.figures, "jobs": job_outcomes(served.lone + served.runs),
        "worker_log": str(args.log or work_dir / "worker.log"),
    }
    alone_s = report["lone_job"][0]["latency_s"]
    for f in served.figures.values():
        p50 = f["latency_s"]["p50"]
        f["p50_over_lone_job"] = round(p50 / alone_s, 2) if p50 is not None and alone_s else None
    pairs = set().union(*(needed_rates(occupancy(run)) for run in served.runs)) if served.runs else set()
    if pairs and not args.no_ceiling:
        say(f"the engine alone in this process, at the {len(pairs)} batch size(s) the service held")
    rates = {} if args.no_ceiling or not pairs else engine_rates(pairs, args, device, compile_mode)
    report["device_name"] = device_name(device)
    report["ceiling_steps_per_s"] = {f"{size}_b{jobs}": round(rate, 2) for (size, jobs), rate in sorted(rates.items())}
    for run in served.runs:
        with_ceiling(served.figures[run.scenario.name], run, rates)
    print_table(report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
