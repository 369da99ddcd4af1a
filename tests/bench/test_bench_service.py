"""bench/bench_service.py --tiny: a real worker process serves the scenarios, and its report has every figure."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPREAD = {"n", "mean", "p50", "p95", "max"}
SCENARIO_FIGURES = {"latency_s", "wait_to_claim_s", "wait_to_first_step_s", "throughput_steps_per_s",
                    "batch_sizes_s", "batch_mean", "max_queued", "ceiling_steps_per_s", "fraction_of_ceiling"}


def test_every_job_the_tiny_service_benchmark_submits_ends_once_and_its_report_has_every_figure(
        tmp_path: Path) -> None:
    database = tmp_path / "queue.sqlite3"
    burst, overload, mixed = 4, 5, 1  # jobs: --burst-jobs; 0.5 s at one each 0.1 s; 0.5 s at one each 0.5 s
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_service.py"), "--tiny", "--scenarios", "burst,stream05,mixed",
         "--burst-jobs", str(burst), "--duration", "0.5", "--overload-every", "0.1", "--mixed-every", "0.5",
         "--overload-limit", "0.5", "--ceiling-steps", "1", "--work-dir", str(tmp_path), "--database", str(database)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])

    # Every job the benchmark submitted is in the queue once, ran at most once, and ended: with its picture,
    # or cancelled by the benchmark at its time limit. None failed, none was left behind.
    rows = sqlite3.connect(database).execute("SELECT state, attempts FROM jobs").fetchall()
    states = Counter(state for state, _ in rows)
    assert len(rows) == report["jobs"]["submitted"] == 1 + burst + overload + mixed
    assert set(states) <= {"succeeded", "cancelled"}, states
    assert states["succeeded"] == report["jobs"]["succeeded"] >= 1 + burst + mixed
    assert states["cancelled"] == report["jobs"]["cancelled_by_bench"]
    assert max(attempts for _, attempts in rows) <= 1
    assert report["jobs"]["succeeded_without_picture"] == report["jobs"]["not_ended"] == 0

    assert [s["label"] for s in report["starts"]] == ["first"] and report["starts"][0]["start_to_ready_s"] > 0
    assert report["starts"][0]["exit_status"] == 0
    assert {"submit_to_claim_s", "submit_to_first_step_s", "latency_s"} <= set(report["lone_job"][0])
    assert set(report["scenarios"]) == {"burst", "stream05", "mixed"}
    for name, figures in report["scenarios"].items():
        assert set(figures) >= SCENARIO_FIGURES, name
        assert set(figures["latency_s"]) >= SPREAD and set(figures["wait_to_first_step_s"]) >= SPREAD, name
    assert report["scenarios"]["burst"]["latency_s"]["n"] == burst
    assert set(report["scenarios"]["mixed"]["batch_sizes_s"]) <= {"32x32", "48x48"}
    for name in ("burst", "mixed"):  # jobs ran: the engine's own rate at their batch sizes is the ceiling
        assert report["scenarios"][name]["ceiling_steps_per_s"] > 0, name
        assert report["scenarios"][name]["fraction_of_ceiling"] > 0, name
    assert Path(report["worker_log"]).read_text().count("=== bench_service: worker start") == 1
