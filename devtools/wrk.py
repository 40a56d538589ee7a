"""wrk, the HTTP load generator: one run, and the figures of its report.

wrk reports the requests it saw answered (any status), their latency distribution with
``--latency``, and apart from those the socket errors (connect, read, write, timeout) and the
answers that were not 2xx or 3xx.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
DEFAULT_TIMEOUT_SECONDS = 2.0  # wrk's own, when --timeout is not given
EXIT_GRACE_SECONDS = 30.0  # past the run and its last timeout, before wrk is taken for hung


@dataclass(frozen=True)
class Run:
    """One wrk run."""

    requests: int
    seconds: float
    requests_per_second: float
    p99_ms: float
    errors: int


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    return path


def wrk(url: str, *, threads: int, connections: int, seconds: float, timeout_seconds: float | None = None,
        script: Path | None = None) -> str:
    """The report (``--latency``) of one wrk run of ``seconds`` on ``url``, with an optional Lua ``script``."""
    options = [f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if timeout_seconds is not None:
        options.append(f"--timeout={timeout_seconds:g}s")
    if script is not None:
        options += ["-s", str(script)]
    limit = seconds + (timeout_seconds or DEFAULT_TIMEOUT_SECONDS) + EXIT_GRACE_SECONDS
    return subprocess.run([wrk_path(), *options, url], capture_output=True, text=True, check=True,
                          timeout=limit).stdout


def parse_wrk_report(output: str) -> Run:
    """One wrk run from its report (``--latency``): its errors are socket errors plus non-2xx answers."""
    answered = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", output)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", output)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if answered is None or rps is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's report:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return Run(requests=int(answered.group(1)), seconds=float(answered.group(2)) * WRK_UNIT_SECONDS[answered.group(3)],
               requests_per_second=float(rps.group(1)),
               p99_ms=float(p99.group(1)) * WRK_UNIT_SECONDS[p99.group(2)] * 1000, errors=errors)
