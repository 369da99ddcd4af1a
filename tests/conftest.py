"""Session-wide test settings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# One intra-op thread in each test process, and (through the environment) in each process the tests start:
# two pytest-xdist workers share two cores, and OpenMP threads that outnumber the cores wait for each other
# at the end of every parallel region; next to a compile, an eager test of the tiny models took 10 to 20
# times as long with two threads each (tests/engine/test_optimiser.py: 10 s alone, 192 s in the suite).
# Set before torch is first imported, which reads it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# engine/fused_norm.py's Triton kernels run in Triton's CPU interpreter on machines without a GPU
# (CI); the variable must be set before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def quicker_triton_interpreter() -> None:
    """Triton's interpreter patches the triton.language modules a kernel's module uses (inspect.getmembers over
    them, a few ms) when the kernel launches, and again at every call of a jitted function inside it: our
    helpers and triton's own (tl.sum, tl.zeros) once per program and loop turn, which was most of the
    interpreter's time in the fused-kernel tests. Those inner patchings are never undone before the launch
    ends, so a call whose modules were patched already since the launch began skips patching them again;
    everything else runs through Triton's own code as it is."""
    try:
        import triton.language as tl
        from triton.runtime import interpreter
    except ImportError:
        return
    patch = interpreter._patch_lang
    launch, call = interpreter.GridExecutor.__call__, interpreter.InterpretedFunction.__call__
    running: list[set[int]] = []  # per launch in progress: the language modules patched since it began

    def languages(fn) -> set[int]:  # the modules _patch_lang patches for fn
        return {id(v) for v in fn.__globals__.values() if v is tl or v is tl.core}

    def launching(self, *args, **kwargs):
        running.append(languages(self.fn))
        try:
            return launch(self, *args, **kwargs)
        finally:
            running.pop()

    def calling(self, *args, **kwargs):
        if not running:
            return call(self, *args, **kwargs)
        needed = languages(self.fn)
        if not needed <= running[-1]:
            running[-1] |= needed  # patched first thing in the call, for the rest of the launch
            return call(self, *args, **kwargs)

        def skipped(fn) -> None:  # this call's patching only (a call ignores what _patch_lang returns)
            interpreter._patch_lang = patch

        interpreter._patch_lang = skipped
        try:
            return call(self, *args, **kwargs)
        finally:
            interpreter._patch_lang = patch

    interpreter.GridExecutor.__call__ = launching
    interpreter.InterpretedFunction.__call__ = calling


if os.environ.get("TRITON_INTERPRET") == "1":
    quicker_triton_interpreter()


def cheap_cpu_kernels() -> None:
    """Inductor's C++ kernels for the CPU, built for compile time rather than speed: the tests compile
    tiny graphs (tests/engine/test_fast_path.py, test_fused_norm.py) and run them once or twice, so
    g++ at -O3 with AVX-512 intrinsics was most of the suite's time. Scalar loops (no vector ISA) at -O0
    compute the same values; the compiled graphs, their fusions and the custom ops in them are the same."""
    import torch._inductor.config as inductor

    inductor.cpp.simdlen = 0  # no vector ISA matches a width of 0: plain scalar C++ loops
    inductor.aot_inductor.debug_compile = True  # -O0 for every C++ build (the only other effect is on AOTInductor)


cheap_cpu_kernels()


POSTGRES_FIXTURES = {"pg_url", "postgres_admin", "make_database", "session_database"}


def uses_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("backend") == "postgres":
        return True
    return bool(POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``xdist_group`` (the torch.compile tests, minutes each) run first, a group to a
    worker (pyproject.toml runs the suite on two workers, ``--dist loadgroup``), so the short tests fill
    the workers around them instead of one long compile starting last. Every worker sorts alike.

    The tests on the PostgreSQL server are one group, so they run one at a time as in a single process:
    each worker has a database of its own, but the server's transaction horizon is shared, and the
    change-feed tests assert what a store sees at once (another worker's transaction in flight makes the
    feed hold a change back for a moment, which a store's reader waits out, but the test would not)."""
    for item in items:
        if uses_postgres(item) and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group("postgres"))
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)


@pytest.fixture(scope="session", autouse=True)
def compile_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One Inductor cache folder (kernels, FX graphs, AOTAutograd graphs) for the test run: a graph compiled
    by one test is loaded, not compiled again, by the next test that builds the same graph, and no run
    reads kernels a different torch or an earlier checkout left in the machine-wide default folder. The
    workers of a pytest-xdist run share it: each worker's temporary folder is in the run's (as xdist's
    documentation shares session data), whatever the workers are called."""
    if hasattr(request.config, "workerinput"):  # a pytest-xdist worker
        folder = tmp_path_factory.getbasetemp().parent / "inductor-cache"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("inductor-cache")
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = before
