"""``python -m bench``: run every benchmark module in this package and print one table.

The exit status is 0 whatever the verdicts say; they are information, not a gate.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Iterator, Sequence

import bench
from bench import BenchResult

_COLUMNS = ("benchmark", "ours", "baseline", "ratio", "target", "verdict")


def benchmark_modules() -> Iterator[str]:
    """Names of the modules in this package that define ``run``, in alphabetical order."""
    for module in sorted(info.name for info in pkgutil.iter_modules(bench.__path__)):
        if module.startswith("_"):
            continue
        if callable(getattr(importlib.import_module(f"bench.{module}"), "run", None)):
            yield module


def _figure(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:,.4g} {unit}"


def _target(result: BenchResult) -> str:
    if result.target is None:
        return "-"
    side = "<=" if result.better == "lower" else ">="
    return f"{side} {_figure(result.target, result.unit)}"


def _verdict(result: BenchResult) -> str:
    return {None: "-", True: "meets target", False: "misses target"}[result.meets_target]


def render_table(results: Sequence[BenchResult]) -> str:
    """The results as an aligned plain-text table, followed by every result's notes."""
    rows = [_COLUMNS] + [
        (
            r.name,
            _figure(r.ours, r.unit),
            _figure(r.baseline, r.unit),
            "-" if r.ratio is None else f"{r.ratio:,.1f}x",
            _target(r),
            _verdict(r),
        )
        for r in results
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    notes = [f"* {r.name}: {note}" for r in results for note in r.notes]
    return "\n".join(lines + ([""] + notes if notes else []))


def main() -> int:
    results: list[BenchResult] = []
    for module in benchmark_modules():
        print(f"running bench.{module} ...", file=sys.stderr, flush=True)
        results.extend(importlib.import_module(f"bench.{module}").run())
    print(render_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
