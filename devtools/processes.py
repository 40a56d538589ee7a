"""The processes the benchmarks and the tests start: the real command, and helpers beside it.

Everything measured or loaded over HTTP runs in a process of its own (the service, the ceiling
app, the simulated upstreams), so the load generator, the server and the upstreams never share an
event loop. Every process is started in a ``with`` block that stops it on the way out, whatever
happened inside: SIGINT first (the service's orderly shutdown, which also removes the demo's
temporary directory), SIGKILL if it has not exited a few seconds later.
"""

from __future__ import annotations

import json
import os
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


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Started:
    """A started process: its handle, and when it was started (perf_counter)."""

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
    orderly SIGINT would then be lost whenever the benchmarks or the tests run in the background.
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
    """An HTTP answer: status, body and content type."""

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


def json_line(handle: Started) -> dict:
    """The first line a helper started with ``stdout=PIPE`` prints, as JSON (where it listens)."""
    assert handle.process.stdout is not None
    line = handle.process.stdout.readline()
    if not line:
        handle.process.wait()
        raise RuntimeError(f"the helper process exited without a word: {handle.last_words()}")
    return json.loads(line)
