"""The hand-off between the engine thread and the event loop: the engine never waits, the store gets the newest."""

from __future__ import annotations

import asyncio
import threading

from worker.handoff import Handoff, Progress, Stopped, StopReason


async def test_only_the_newest_progress_of_a_job_waits_to_be_written_and_endings_are_all_kept():
    handoff = Handoff(asyncio.get_running_loop())

    def engine_thread() -> None:  # five reports of job 1 and one of job 2 while nobody takes them
        for step in (5, 10, 15, 20, 25):
            handoff.post(Progress(1, step, b"webp", 1.0))
        handoff.post(Progress(2, 5, b"webp", 1.0))
        handoff.post(Stopped(2, StopReason.CANCELLED, 7))

    await asyncio.to_thread(engine_thread)  # it got through without anyone taking its news
    handoff.close()
    news = []
    while (item := await handoff.next()) is not None:
        news.append(item)
    assert news == [Progress(1, 25, b"webp", 1.0), Progress(2, 5, b"webp", 1.0), Stopped(2, StopReason.CANCELLED, 7)]


async def test_stop_requests_reach_the_engine_thread_and_the_first_reason_holds():
    handoff = Handoff(asyncio.get_running_loop())
    handoff.stop(3, StopReason.CANCELLED)
    handoff.stop(3, StopReason.LEASE_LOST)
    seen: list[dict[int, StopReason]] = []
    thread = threading.Thread(target=lambda: seen.append(handoff.stops()))
    thread.start()
    thread.join()
    assert seen == [{3: StopReason.CANCELLED}]


async def test_joiners_reach_the_engine_thread_once_and_a_rejoining_job_sheds_its_old_stop(tiny_models):
    from db import Claim
    from jobspec import JobParams
    from tests.worker.engine_fixtures import tiny_params

    handoff = Handoff(asyncio.get_running_loop())
    params = JobParams.from_json(tiny_params(tiny_models))
    job = type("Row", (), {"id": 4})()
    claim = Claim(job=job, token="t2")  # type: ignore[arg-type]
    handoff.stop(4, StopReason.LEASE_LOST)  # asked of the attempt before
    handoff.join([(claim, params)])
    taken: list[object] = []
    thread = threading.Thread(target=lambda: taken.extend([handoff.joiners(), handoff.joiners(), handoff.stops()]))
    thread.start()
    thread.join()
    assert taken == [[(claim, params)], [], {}]
