"""The service benchmark's readable table, printed before its JSON line."""

from __future__ import annotations

from typing import Any


def show(value: float | None, width: int = 6, digits: int = 1) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else " " * (width - 1) + "-"


def print_table(report: dict[str, Any]) -> None:
    print()
    for start in report["starts"]:
        print(f"worker start ({start['label']}, compile cache {start['compile_cache']}): ready after "
              f"{start['start_to_ready_s']:.1f} s; stopped in {start['stop_s']:.1f} s, exit status {start['exit_status']}")
    for label, lone in zip((s["label"] for s in report["starts"]), report["lone_job"], strict=True):
        print(f"lone job on the idle ready worker ({label}): claimed after {show(lone['submit_to_claim_s'], 0, 2)} s, "
              f"first step after {show(lone['submit_to_first_step_s'], 0, 2)} s, picture after "
              f"{show(lone['latency_s'], 0, 1)} s")
    print(f"\n{'scenario':9s} {'jobs':>4s} {'done':>4s} {'canc':>4s} | {'latency s: mean':>15s} {'p50':>6s} "
          f"{'p95':>6s} {'max':>6s} | {'to 1st step p50':>15s} {'p95':>6s} | {'steps/s':>7s} {'ceiling':>7s} "
          f"{'frac':>5s} | {'batch':>5s} {'queue':>5s}")
    for name, f in report["scenarios"].items():
        lat, first = f["latency_s"], f["wait_to_first_step_s"]
        print(f"{name:9s} {f['jobs']:4d} {f['succeeded']:4d} {f['cancelled_by_bench']:4d} | {show(lat['mean'], 15)} "
              f"{show(lat['p50'])} {show(lat['p95'])} {show(lat['max'])} | {show(first['p50'], 15, 2)} "
              f"{show(first['p95'], 6, 2)} | {show(f['throughput_steps_per_s'], 7)} {show(f['ceiling_steps_per_s'], 7)} "
              f"{show(f['fraction_of_ceiling'], 5, 2)} | {show(f['batch_mean'], 5)} {f['max_queued']:5d}")
    print("(latency: submit to finished picture, finished jobs; batch: mean jobs running while any ran, from the "
          "job rows; queue: most jobs waiting at once; frac: steps/s over the engine's rate at those batch sizes)")
