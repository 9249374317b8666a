"""A progress bar for training: epochs, batches, loss and speed.

Shown only on a terminal; silent when verbose=0 or when the stream is not a TTY
(logs, CI, notebooks piping output). verbose=2 prints one line per epoch anywhere.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Draws ``epoch e/E [=====>    ] b/B loss 0.1234 1234 samples/s`` in place."""

    width = 24
    interval = 0.1          # seconds between redraws

    def __init__(self, epochs: int, batches: int, verbose: int = 1,
                 stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.epochs, self.batches = epochs, batches
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.live = verbose == 1 and isatty
        self.lines = verbose == 2 or (verbose == 1 and isatty)
        self._last = 0.0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.samples = 0
        self.started = time.perf_counter()

    def update(self, batch: int, loss: float, samples: int) -> None:
        """After each batch: redraw at most every ``interval`` seconds."""
        self.samples += samples
        if not self.live:
            return
        now = time.perf_counter()
        if now - self._last < self.interval and batch + 1 < self.batches:
            return
        self._last = now
        done = int(self.width * (batch + 1) / self.batches)
        bar = "=" * done + (">" if done < self.width else "") + " " * (self.width - done - 1)
        self.stream.write(f"\repoch {self.epoch + 1}/{self.epochs} [{bar[:self.width]}] "
                          f"{batch + 1}/{self.batches} loss {loss:.4g} "
                          f"{self._rate():,.0f} samples/s")
        self.stream.flush()

    def end_epoch(self, logs: dict[str, float]) -> None:
        """After each epoch: one line with the epoch's logs (terminal or verbose=2)."""
        if not self.lines:
            return
        items = " ".join(f"{k} {v:.4g}" for k, v in logs.items() if isinstance(v, float))
        line = f"epoch {self.epoch + 1}/{self.epochs} {items} {self._rate():,.0f} samples/s"
        self.stream.write("\r" + line + "\x1b[K\n" if self.live else line + "\n")
        self.stream.flush()

    def _rate(self) -> float:
        return self.samples / max(time.perf_counter() - self.started, 1e-9)
