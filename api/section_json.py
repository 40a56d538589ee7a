"""JSON responses from pieces encoded once: section bodies per snapshot, the dashboard per set.

A section's body only changes when its snapshot does, but encoding it costs far more than
serving it (``json.dumps`` of the 40 kB dashboard takes about 0.3 ms; aiohttp sends it in a
tenth of that). What does change is small: each source's ``age_seconds`` (contract §4: as of the
response) and the dashboard's own ``generated_at``, both stated to the millisecond
(:func:`exporter.health.millisecond`). So responses are kept as :class:`Template` s -- encoded
bytes with holes for those values. A source's status member is encoded once per health change,
with the age written in; the holes are filled once per millisecond, and every request within
that millisecond (a dozen at full load) is sent the same bytes.

The bytes are exactly what :func:`api.jsonio.dumps` gives for the same data (tested).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from exporter.health import age_seconds, millisecond
from exporter.timeranges import iso_z

from .jsonio import dumps

if TYPE_CHECKING:
    from exporter.areas.base import Section
    from exporter.service import AnalyticsService

# The hole for a response's own generation time; every other hole is named by a source and holds
# that source's '"name":{status object}' member.
GENERATED_AT = "generated_at"
_HEADER_FIELDS = frozenset(("time_range", "generated_at", "sources", "stale"))

Piece = bytes | str  # encoded JSON, or the name of a hole


@dataclass(frozen=True, eq=False)
class Template:
    """JSON text as constant bytes and named holes, filled per request."""

    pieces: tuple[Piece, ...]
    holes: frozenset[str]

    @classmethod
    def of(cls, pieces: Iterable[Piece | Template]) -> Template:
        """Concatenate bytes, holes and other templates (adjacent bytes are merged)."""
        merged: list[Piece] = []
        for piece in pieces:
            for part in piece.pieces if isinstance(piece, Template) else (piece,):
                if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
                    merged[-1] += part
                else:
                    merged.append(part)
        return cls(tuple(merged), frozenset(part for part in merged if isinstance(part, str)))

    def fill(self, values: Mapping[str, bytes]) -> bytes:
        return b"".join([values[piece] if piece.__class__ is str else piece for piece in self.pieces])


def encoded(value: object) -> bytes:
    """``value`` as JSON bytes (NaN-safe, like every response)."""
    return dumps(value).encode()


def json_object(members: Iterable[tuple[str, Piece | Template]]) -> Template:
    """A JSON object from ``(key, encoded value)`` pairs, in order."""
    return Template.of([b"{", *_members(members), b"}"])


def _members(members: Iterable[tuple[str, Piece | Template]]) -> list[Piece | Template]:
    pieces: list[Piece | Template] = []
    for index, (key, value) in enumerate(members):
        pieces += [b"," if index else b"", encoded(key) + b":", value]
    return pieces


def sources_object(names: Iterable[str]) -> Template:
    """The ``sources`` object of ``names``: one hole per source."""
    pieces: list[Piece] = [b"{"]
    for index, name in enumerate(names):
        pieces += [b"," if index else b"", name]
    return Template.of([*pieces, b"}"])


@dataclass
class _Status:
    """One source's '"name":{status object}' member around its age: ``head + age + tail``, and
    the member last written (requests within the same millisecond of age share it)."""

    revision: int
    last_success: float | None
    head: bytes
    tail: bytes
    age: float | None = None
    member: bytes = b""

    def at(self, now: float) -> bytes:
        age = age_seconds(self.last_success, now)
        if not self.member or age != self.age:
            # repr() is how json writes a float; ages are finite (differences of clock readings).
            self.age, self.member = age, self.head + (b"null" if age is None else repr(age).encode()) + self.tail
        return self.member


@dataclass(frozen=True)
class _Kept:
    template: Template
    memo_revision: int
    valid_until: float


@dataclass(frozen=True)
class _Filled:
    """A template's bytes as of one millisecond and health revision."""

    template: Template
    millisecond: float
    health_revision: int
    body: bytes


class SectionJson:
    """The application's JSON templates: per-section bodies and anything built from fresh snapshots.

    What is kept is bounded by the memo's keys (one body per section parameter set) plus what
    callers :meth:`keep` under their own keys.
    """

    def __init__(self, service: "AnalyticsService") -> None:
        self._health = service.health
        self._memo = service.memo
        self._statuses: dict[str, _Status] = {}
        self._sections: dict[Hashable, tuple[dict, bool, Template]] = {}
        self._kept: dict[Hashable, _Kept] = {}
        self._filled: dict[Hashable, _Filled] = {}

    def response(self, key: Hashable, template: Template, now: float) -> bytes:
        """``template`` filled as of ``now``: the holes of every source's status and, if it has
        one, ``generated_at``. ``key`` names what the template is for; requests for it within
        one millisecond, with no health change between them, share one fill."""
        tick, revision = millisecond(now), self._health.revision
        filled = self._filled.get(key)
        if (filled is None or filled.template is not template or filled.millisecond != tick
                or filled.health_revision != revision):
            holes = self.statuses(tick, template.holes - {GENERATED_AT})
            if GENERATED_AT in template.holes:
                holes[GENERATED_AT] = encoded_time(tick)
            filled = self._filled[key] = _Filled(template, tick, revision, template.fill(holes))
        return filled.body

    def statuses(self, now: float, names: Iterable[str] | None = None) -> dict[str, bytes]:
        """The values for the source holes as of ``now``: each source's '"name":{status object}'
        member (``HealthRegistry.summary``), for ``names`` (default: every source)."""
        health = self._health
        values = {}
        for name in health.sources if names is None else names:
            status = self._statuses.get(name)
            if status is None or status.revision != health.revision:
                status = self._statuses[name] = self._status(name)
            values[name] = status.at(now)
        return values

    def section(self, key: Hashable, section: "Section") -> Template:
        """``section.to_json(service)`` as a template; ``key`` names the snapshot's parameters
        (``Area.key``). The body is encoded once per snapshot."""
        key = self.section_key(key, section)
        kept = self._sections.get(key)
        # The snapshot is told by its body's identity: the memo holds one dict per load, and the
        # reference kept here stops its id being reused. (Two loads may finish at the same clock time.)
        if kept is None or kept[0] is not section.body or kept[1] != section.stale:
            kept = self._sections[key] = (section.body, section.stale, self._section(section))
        return kept[2]

    @staticmethod
    def section_key(key: Hashable, section: "Section") -> Hashable:
        """What a section's template and response are kept under (an area may serve one
        snapshot under several time ranges, e.g. segments)."""
        return key, section.time_range

    def reusable(self, key: Hashable) -> Template | None:
        """What was kept under ``key``, if no snapshot has changed or expired since (else None)."""
        kept = self._kept.get(key)
        if kept is None or kept.memo_revision != self._memo.revision or self._memo.clock() >= kept.valid_until:
            return None
        return kept.template

    def keep(self, key: Hashable, template: Template) -> None:
        """Keep ``template``, built from snapshots that are all fresh now, for :meth:`reusable`."""
        self._kept[key] = _Kept(template, self._memo.revision, self._memo.next_change_at())

    def _status(self, name: str) -> _Status:
        """The member split around ``age_seconds``, whatever the summary's other keys are."""
        members = list(self._health.summary(name).items())
        at = [key for key, _ in members].index("age_seconds")
        head = dumps(dict(members[:at]))[:-1] + ("," if at else "") + '"age_seconds":'
        tail = dumps(dict(members[at + 1:]))[1:]  # '}' alone when age_seconds is the last key
        return _Status(self._health.revision, self._health.sources[name].last_success,
                       f"{dumps(name)}:{head}".encode(), (tail if tail == "}" else "," + tail).encode())

    @staticmethod
    def _section(section: "Section") -> Template:
        clashing = _HEADER_FIELDS.intersection(section.body)
        if clashing:  # the header and the body would both claim the key
            raise ValueError(f"a section body must not have the header's keys: {sorted(clashing)}")
        header = [("time_range", encoded(section.time_range)), ("generated_at", encoded(section.generated_at_iso)),
                  ("sources", sources_object(section.sources))]
        if section.stale:
            header.append(("stale", b"true"))
        body = encoded(section.body)  # '{...}': its members follow the header's in the same object
        return Template.of([b"{", *_members(header), b"," + body[1:] if len(body) > 2 else b"}"])


def iso_at(epoch_seconds: float) -> str:
    """A clock reading as the API writes timestamps (ISO 8601, UTC, ``Z``)."""
    return iso_z(datetime.fromtimestamp(epoch_seconds, timezone.utc))


def encoded_time(epoch_seconds: float) -> bytes:
    """:func:`iso_at` as a JSON string (ISO text needs no escaping)."""
    return b'"%s"' % iso_at(epoch_seconds).encode()
