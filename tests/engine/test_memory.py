from engine.memory import BatchShape, job_gib, max_batch


def test_a_512_job_is_predicted_near_its_measured_peak_with_a_margin() -> None:
    eager = job_gib(BatchShape(512, 512, 32))
    compiled = job_gib(BatchShape(512, 512, 32, compiled=True))
    assert 3.18 < eager < 3.18 * 1.4  # measured 3.18 GiB a job
    assert 1.82 < compiled < 1.82 * 1.4  # measured 1.82 GiB a job
    fused = job_gib(BatchShape(512, 512, 32, compiled=True, fused=True))
    assert 1.09 < fused < 1.09 * 1.4  # measured 1.09 GiB a job with the fused kernels (H100, 2 to 16 jobs)
    assert 0.60 < job_gib(BatchShape(256, 256, 32, compiled=True, fused=True)) < 0.60 * 1.4
    assert 1.22 < job_gib(BatchShape(256, 256, 32)) < 1.22 * 1.4


def test_bigger_pictures_and_more_cutouts_cost_more() -> None:
    assert job_gib(BatchShape(768, 768, 32)) > job_gib(BatchShape(512, 512, 32))
    assert job_gib(BatchShape(512, 512, 64)) > job_gib(BatchShape(512, 512, 32))


def test_forty_fused_512_jobs_fit_on_an_80_gib_card() -> None:
    assert max_batch(78.0, BatchShape(512, 512, 32, compiled=True, fused=True), limit=64) >= 40


def test_the_batch_is_split_to_what_fits_and_never_below_zero() -> None:
    shape = BatchShape(512, 512, 32)
    assert max_batch(80.0, shape, limit=16) == 16
    assert max_batch(10.0, shape, limit=16) == 2
    assert max_batch(3.0, shape, limit=16) == 0
    assert max_batch(0.1, shape, limit=16) == 0
