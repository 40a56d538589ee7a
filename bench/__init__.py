"""Benchmarks: our figure against a plain baseline, printed as ratios (never pass/fail).

``python -m bench`` runs every module of this package that defines ``run() -> list[BenchResult]``
and prints one table. A new benchmark (HTTP, funnels, segments, memory, ...) is one more module
here; nothing else changes. Benchmarks are not tests: timing never decides a test's outcome, and
the verdict column is information only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class BenchResult:
    """One measured figure of ours next to the baseline's, in the same ``unit``.

    ``target`` bounds our figure (an upper bound when lower is better, a lower bound otherwise);
    None means no target. ``notes`` are printed under the table (e.g. how the two sides were
    checked to compute the same thing).
    """

    name: str
    ours: float
    baseline: float | None
    unit: str
    target: float | None = None
    better: Literal["lower", "higher"] = "lower"
    notes: tuple[str, ...] = ()

    @property
    def ratio(self) -> float | None:
        """How many times better than the baseline we are (above 1: we win)."""
        if self.baseline is None or self.ours <= 0 or self.baseline <= 0:
            return None
        return self.baseline / self.ours if self.better == "lower" else self.ours / self.baseline

    @property
    def meets_target(self) -> bool | None:
        """Whether our figure is on the right side of the target; None without a target."""
        if self.target is None:
            return None
        return self.ours <= self.target if self.better == "lower" else self.ours >= self.target


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls, in seconds.

    The minimum, not the mean: noise from other processes on a shared machine only ever adds
    time, so the fastest run is the best estimate of the code's own cost.
    """
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best
