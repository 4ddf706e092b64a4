"""A quiet progress line on stderr for long work: at most one update a second."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, unit: str = "records", total: int | None = None, enabled: bool = True) -> None:
        self.label = label
        self.unit = unit
        self.total = total
        self.done = 0
        self.enabled = enabled
        self._start = time.monotonic()
        self._last = self._start
        self._shown = False

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last >= 1.0:
            self._last = now
            self._show(now)

    def _show(self, now: float) -> None:
        rate = self.done / max(now - self._start, 1e-9)
        of = f"/{self.total:,}" if self.total else ""
        end = "\r" if sys.stderr.isatty() else "\n"
        speed = f"{rate:,.0f}/s" if rate >= 1 else f"{1 / max(rate, 1e-9):,.0f} s each"
        eta = ""
        if self.total and rate > 0 and self.done < self.total:
            eta = f", ETA {(self.total - self.done) / rate:,.0f} s"
        print(f"{self.label}: {self.done:,}{of} {self.unit} ({speed}{eta})", end=end, file=sys.stderr, flush=True)
        self._shown = True

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def close(self) -> None:
        if self._shown and sys.stderr.isatty():
            print(file=sys.stderr)
