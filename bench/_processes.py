"""The processes the service benchmarks start, and the load tool they share.

Everything measured over HTTP runs in a process of its own (the service, the ceiling app, the
simulated upstreams), so the load generator, the server and the upstreams never share an event
loop. Every process is started in a ``with`` block that stops it on the way out, whatever
happened inside: SIGINT first (the service's orderly shutdown, which also removes the demo's
temporary directory), SIGKILL if it has not exited a few seconds later.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.01

# The load every HTTP figure is measured with (issue 9): wrk, 100 connections, 2 threads.
WRK_CONNECTIONS = 100
WRK_THREADS = 2


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Started:
    """A process started by a benchmark: its handle, and when it was started (perf_counter)."""

    process: subprocess.Popen
    started_at: float
    log: IO[bytes]  # the process's stderr

    def last_words(self) -> str:
        """The end of what the process wrote on stderr (for error messages)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def status_kib(self, field: str) -> int:
        """A ``/proc/<pid>/status`` figure in KiB, e.g. ``VmRSS`` (now) or ``VmHWM`` (peak RSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0])
        raise KeyError(field)


@contextmanager
def started(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            stdout: int | None = subprocess.DEVNULL) -> Iterator[Started]:
    """Run ``python <argv>`` from the repository root for the duration of the block.

    stderr goes to a temporary file, not a pipe: a pipe nobody reads would block a chatty server.
    """
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, *argv], cwd=REPO_ROOT, env={**os.environ, **(env or {})},
                                   stdin=subprocess.DEVNULL, stdout=stdout, stderr=log, text=True,
                                   preexec_fn=_interruptible)
        try:
            yield Started(process, time.perf_counter(), log)
        finally:
            stop(process)
            if process.stdout is not None:
                process.stdout.close()


def _interruptible() -> None:
    """In the child before exec: SIGINT at its default, so Python turns it into KeyboardInterrupt.

    A shell starts background jobs with SIGINT ignored, and children inherit that; ``stop``'s
    orderly SIGINT would then be lost whenever the benchmarks themselves run in the background.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(process: subprocess.Popen) -> None:
    """Interrupt ``process`` (orderly shutdown), kill it if it lingers; reap it either way."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve_argv(port: int, *, demo: bool) -> list[str]:
    """The service's own command line (``python -m exporter serve``)."""
    return ["-m", "exporter", "serve", "--host", "127.0.0.1", "--port", str(port), *(["--demo"] if demo else [])]


@dataclass(frozen=True)
class Reply:
    """An HTTP answer as the benchmarks need it."""

    status: int
    body: bytes
    content_type: str


def get(url: str, *, timeout: float = 30.0) -> Reply:
    """The answer to a GET (error statuses included); raises OSError if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return Reply(response.status, response.read(), response.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read(), error.headers.get("Content-Type", ""))


def wait_until_ok(handle: Started, url: str, *, timeout: float = 60.0) -> tuple[float, Reply]:
    """Poll ``url`` until it answers 200: seconds since ``handle`` was started, and the answer.

    Raises RuntimeError naming the process's last words if it exits or the time runs out.
    """
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if handle.process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({handle.process.returncode}): {handle.last_words()}")
        try:
            reply = get(url, timeout=max(deadline - time.perf_counter(), 0.1))
        except OSError:
            time.sleep(POLL_SECONDS)
            continue
        if reply.status == 200:
            return time.perf_counter() - handle.started_at, reply
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g} s")


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    """What one wrk run measured, and the CPU time the server spent per request meanwhile.

    CPU per request is the steadiest of the three on a shared machine: other processes delay a
    server, they do not make its work bigger.
    """

    requests_per_second: float
    p99_ms: float
    errors: int  # socket errors plus non-2xx answers: a run with any is not a valid figure
    cpu_us_per_request: float


WRK_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


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


def wrk(url: str, server: Started, *, seconds: float) -> Load:
    """Load ``url`` (served by ``server``) with wrk, 100 connections and 2 threads, for ``seconds``."""
    argv = [wrk_path(), f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds:g}s", "--latency", url]
    cpu_before = server.cpu_seconds()
    output = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    cpu = server.cpu_seconds() - cpu_before
    run = parse_wrk_report(output)
    return Load(run.requests_per_second, run.p99_ms, run.errors, cpu * 1e6 / max(run.requests, 1))


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


def json_line(handle: Started) -> dict:
    """The first line a helper started with ``stdout=PIPE`` prints, as JSON (where it listens)."""
    assert handle.process.stdout is not None
    line = handle.process.stdout.readline()
    if not line:
        handle.process.wait()
        raise RuntimeError(f"the helper process exited without a word: {handle.last_words()}")
    return json.loads(line)
