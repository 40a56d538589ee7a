"""External tools the tests use (promtool, prometheus, wrk, chdb): found on PATH or in ``.tools/``.

Locally a missing tool skips the test with a reason; under CI (``CI=true``) it fails, because
`.ci/run` installs the tools and a skipped check there would hide a broken pipeline.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest

from exporter.results import to_json

LOCAL_TOOLS = Path(__file__).resolve().parent.parent / ".tools" / "prometheus" / "usr" / "bin"


def require_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(LOCAL_TOOLS))
    if found:
        return found
    message = f"{name} not found (run .ci/run, or unpack Debian's prometheus package into .tools/prometheus)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def published(function):
    """``function`` with its result as the API publishes it: plain JSON data (tests of an
    analysis check the numbers a caller reads)."""
    @functools.wraps(function)
    def plain(*args, **kwargs):
        return to_json(function(*args, **kwargs))

    return plain


def require_chdb():
    """The chdb module; the test is skipped without it, except on CI, where it must be installed."""
    if os.environ.get("CI") == "true":
        import chdb  # noqa: F401 - a missing engine fails the run on CI instead of skipping
    return pytest.importorskip("chdb", reason="chdb (the ClickHouse engine, in-process) is not installed")
