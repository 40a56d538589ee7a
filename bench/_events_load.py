"""One events-file load in a process of its own, for ``bench/events_file.py``.

``python -m bench._events_load MODE PATH [PROPERTIES] [APPEND_PATH]`` prints one JSON line:

- MODE ``ours``: :class:`~exporter.events.file_loader.EventsFile` reads PATH (keeping the
  comma-separated PROPERTIES); then, with APPEND_PATH, that file's bytes are appended to PATH and
  the file is refreshed again (an incremental read), and the grown file is also loaded afresh to
  check that both give the same log. ``stdlib``: the same load with the standard library's JSON
  parser instead of orjson. ``plain``: the plainest parse, a per-line ``json.loads`` into Python
  lists (user, event and timestamp).
- ``events``, ``seconds`` (wall) and ``cpu_seconds`` of the load (and ``append_*`` of the
  incremental read); ``peak_kib`` (``VmHWM``) and ``held_kib`` (``VmRSS`` after the load, the
  result still held, garbage collected); ``import_kib``: what importing the loader (numpy, orjson)
  added to the bare interpreter; ``same_as_fresh`` for the append check.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import time


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+)", status.read(), re.MULTILINE).group(1))


def _plain(path: str) -> tuple[int, object]:
    users, events, stamps = [], [], []
    with open(path, "rb") as lines:
        for line in lines:
            record = json.loads(line)
            users.append(record["user_id"])
            events.append(record["event"])
            stamps.append(record["timestamp"])
    return len(users), (users, events, stamps)


def _stdlib_loads(line: bytes) -> object:
    """The loader's own standard-library reading of a line, raising as orjson does."""
    from exporter.events import file_loader

    record = file_loader._stdlib_loads(line)
    if record is file_loader._NOT_JSON:
        raise ValueError("not JSON")
    return record


def _same_log(left, right) -> bool:
    import numpy as np

    columns = ("user_ids", "event_ids", "timestamps", "user_names", "event_names")
    if not all(np.array_equal(getattr(left, name), getattr(right, name)) for name in columns):
        return False
    return left.properties.keys() == right.properties.keys() and all(
        left.properties[name].values == right.properties[name].values
        and np.array_equal(left.properties[name].carriers()[0], right.properties[name].carriers()[0])
        and np.array_equal(left.properties[name].carriers()[1], right.properties[name].carriers()[1])
        for name in left.properties)


def main(mode: str, path: str, properties: list[str], append_path: str | None) -> dict:
    bare = _status_kib("VmRSS")
    if mode != "plain":
        from exporter.events import file_loader
        if mode == "stdlib":
            file_loader._loads = _stdlib_loads
    report: dict = {"import_kib": _status_kib("VmRSS") - bare}
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "plain":
        events, held = _plain(path)
    else:
        followed = file_loader.EventsFile(path, properties)
        held = followed.refresh()
        events = len(held.log)
    report |= {"events": events, "seconds": time.perf_counter() - started,
               "cpu_seconds": time.process_time() - cpu_started}
    gc.collect()
    report |= {"peak_kib": _status_kib("VmHWM"), "held_kib": _status_kib("VmRSS")}
    if append_path:
        with open(append_path, "rb") as source, open(path, "ab") as target:
            target.write(source.read())
        started, cpu_started = time.perf_counter(), time.process_time()
        appended = followed.refresh()
        report |= {"append_kind": appended.kind, "append_events": len(appended.log) - events,
                   "append_seconds": time.perf_counter() - started,
                   "append_cpu_seconds": time.process_time() - cpu_started}
        del held
        fresh = file_loader.load_events_file(path, properties)
        report["same_as_fresh"] = (_same_log(appended.log, fresh.log) and appended.total_lines == fresh.total_lines
                                   and appended.malformed_lines == fresh.malformed_lines)
    return report


if __name__ == "__main__":
    arguments = sys.argv[1:] + [""] * (4 - len(sys.argv[1:]))
    print(json.dumps(main(arguments[0], arguments[1], [p for p in arguments[2].split(",") if p],
                          arguments[3] or None)))
    sys.stdout.flush()
    os._exit(0)  # skip freeing the columns at exit
