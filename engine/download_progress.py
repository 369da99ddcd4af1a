"""Byte progress of a download: a tqdm bar, or a callback."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from tqdm import tqdm

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``callback(bytes_done, bytes_total_or_None)`` whenever the count changes."""


class ByteProgress:
    """Absolute byte counter shown as a tqdm bar or passed to a callback."""

    def __init__(self, progress: bool | ProgressCallback, desc: str, total: int | None) -> None:
        self._callback = progress if callable(progress) else None
        self._bar: tqdm | None = None
        if progress is True:
            self._bar = tqdm(
                total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                mininterval=0.5, leave=True,
            )
        self._total = total
        self._done: int | None = None

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()

    def set(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self._total = total
        if self._bar is not None:
            if self._bar.total != self._total:
                self._bar.total = self._total
            self._bar.n = done
            self._bar.refresh()
        self._report(done)

    def add(self, n: int) -> None:
        done = (self._done or 0) + n
        if self._bar is not None:
            self._bar.update(n)
        self._report(done)

    def _report(self, done: int) -> None:
        if done == self._done:
            return
        self._done = done
        if self._callback is not None:
            self._callback(done, self._total)
