"""Report rendering over the demo's 30-day dashboard: time, and the memory the report libraries add.

- **pdf** and **xlsx** render time (best of a few, libraries already imported) against the CSV
  export of the same dashboard: the same numbers written in the plainest format.
- **Memory**: a fresh process imports the libraries the service runs on (the baseline: its
  resident memory then), then renders both formats once, importing reportlab and XlsxWriter on
  the way (ours: resident memory after). The difference is what a serving process keeps once it
  has rendered a report, against its idle budget of 120 MB; the first (cold) render times are
  printed in the notes.

The dashboard comes from ``analytics-dashboard export --format json --demo``, run once.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import BenchResult, best_time

REPEATS = 5
PDF_TARGET_SECONDS = 1.0
XLSX_TARGET_SECONDS = 0.5
SERVICE_LIBRARIES = ("aiohttp.web", "numpy", "scipy.special", "prometheus_client", "yaml")


def run() -> list[BenchResult]:
    from api.export import dashboard_csv, dashboard_rows
    from exporter.reports.render import render

    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "dashboard.json"
        path.write_bytes(subprocess.run([sys.executable, "-m", "exporter", "export", "--format", "json", "--demo"],
                                        capture_output=True, check=True).stdout)
        before_mb, after_mb, cold = json.loads(subprocess.run(
            [sys.executable, "-m", "bench.report_render", str(path)], capture_output=True, text=True,
            check=True).stdout)
        dashboard = json.loads(path.read_text())
    areas = _areas()
    rows = list(dashboard_rows(areas, dashboard))
    csv_seconds = best_time(lambda: dashboard_csv(areas, dashboard), REPEATS)
    size = f"{len(rows)} numbers in {len(dashboard) - 3} sections"
    results = []
    for form, target in (("pdf", PDF_TARGET_SECONDS), ("xlsx", XLSX_TARGET_SECONDS)):
        seconds = best_time(lambda form=form: render(form, dashboard, rows), REPEATS)
        results.append(BenchResult(
            f"render {form} (demo dashboard, 30d)", seconds * 1000, csv_seconds * 1000, "ms", target=target * 1000,
            notes=(f"{form}: {size}, libraries imported; baseline: the CSV export of the same dashboard",)))
    memory = (f"baseline: a process with only {', '.join(SERVICE_LIBRARIES)} imported; the report libraries add "
              f"{after_mb - before_mb:.1f} MB; first renders, imports included: pdf {cold['pdf'] * 1000:.0f} ms, "
              f"xlsx {cold['xlsx'] * 1000:.0f} ms")
    results.append(BenchResult("RSS after rendering pdf and xlsx", after_mb, before_mb, "MB", notes=(memory,)))
    return results


def _child(path: str) -> None:
    """In a fresh process: RSS with the service's libraries, then after one render of each format."""
    import importlib

    for library in SERVICE_LIBRARIES:
        importlib.import_module(library)
    from api.export import dashboard_rows
    from exporter.reports.render import render

    dashboard = json.loads(Path(path).read_text())
    rows = list(dashboard_rows(_areas(), dashboard))
    before = _rss_mb()
    cold = {}
    for form in ("pdf", "xlsx"):
        started = time.perf_counter()
        render(form, dashboard, rows)
        cold[form] = time.perf_counter() - started
    print(json.dumps([before, _rss_mb(), cold]))


def _areas():
    """The sections' declarations, which give the tidy rows their units (no source is reached)."""
    from exporter.config import Config
    from exporter.service import AnalyticsService

    return AnalyticsService(Config()).areas


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


if __name__ == "__main__":
    _child(sys.argv[1])
