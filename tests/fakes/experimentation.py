"""A fake Experimentation Service on loopback (docs/upstreams.md#experimentation-service) with fault
switches and a gauge of the requests it has in flight, so tests can see how hard the client pushes it.

Records are built with :func:`experiment_record`; ``/stats`` answers from per-variant counts.
The list comes in a different (seeded) order on every request, like the upstream's.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

STATS_FAULTS = ("500", "404", "malformed", "disconnect")


def experiment_record(number: int, *, status: str = "running", arms: tuple[tuple[str, float], ...] = (
                      ("control", 0.5), ("treatment", 0.5)), target_sample_size: int | None = 1000,
                      significance_level: float | None = 0.05, started_at: datetime | None = None,
                      stopped_at: datetime | None = None) -> dict[str, Any]:
    """One experiment as the upstream lists it (naive UTC timestamps)."""
    created = (started_at or datetime(2026, 11, 1)) - timedelta(hours=1)
    return {
        "id": f"00000000-0000-4000-8000-{number:012d}", "name": f"Experiment {number:03d}",
        "description": "d", "hypothesis": "h", "status": status,
        "variants": [{"name": name, "allocation": allocation, "config": {}} for name, allocation in arms],
        "metrics": ["conversion"], "target_sample_size": target_sample_size,
        "significance_level": significance_level, "traffic_allocation": 1.0,
        "created_at": created.isoformat(),
        "started_at": None if started_at is None else started_at.isoformat(),
        "stopped_at": None if stopped_at is None else stopped_at.isoformat(),
    }


@dataclass
class FakeExperimentation:
    experiments: list[dict[str, Any]]
    counts: dict[str, list[tuple[int, int]]]  # id -> (sample_size, conversions) per configured variant
    stats_faults: dict[str, str] = field(default_factory=dict)  # id -> one of STATS_FAULTS
    fault: str | None = None  # every request: "503html" | "malformed" | "hang"
    max_limit: int | None = None  # serve at most this many per page (the real upstream has no cap)
    shuffle: bool = True  # a new order on every list request, as upstream (no ORDER BY)
    latency_s: float = 0.0
    seed: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    list_queries: list[dict[str, str]] = field(default_factory=list)
    stats_requests: Counter[str] = field(default_factory=Counter)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gauge])
        app.router.add_get("/api/v1/experiments", self.list_experiments)
        app.router.add_get("/api/v1/experiments/{experiment_id}/stats", self.stats)
        return app

    @web.middleware
    async def _gauge(self, request: web.Request, handler) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if self.fault == "hang":
                await asyncio.sleep(30)
            if self.fault == "503html":
                return web.Response(status=503, text="<html><body><h1>503 Service Unavailable</h1></body></html>",
                                    content_type="text/html")
            if self.fault == "malformed":
                return web.Response(text='{"experiments": [{"id": ', content_type="application/json")
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def list_experiments(self, request: web.Request) -> web.Response:
        self.list_queries.append(dict(request.query))
        skip, limit = int(request.query.get("skip", 0)), int(request.query.get("limit", 100))
        status = request.query.get("status")
        matching = [e for e in self.experiments if not status or e["status"] == status]
        if self.shuffle:
            random.Random(f"{self.seed}:{len(self.list_queries)}").shuffle(matching)
        served = min(limit, self.max_limit) if self.max_limit is not None else limit
        return web.json_response({"experiments": matching[skip:skip + served], "total": len(matching),
                                  "skip": skip, "limit": limit})

    async def stats(self, request: web.Request) -> web.StreamResponse:
        experiment_id = request.match_info["experiment_id"]
        self.stats_requests[experiment_id] += 1
        fault = self.stats_faults.get(experiment_id)
        record = next((e for e in self.experiments if e["id"] == experiment_id), None)
        if fault == "404" or record is None:
            return web.json_response({"detail": "Experiment not found or insufficient data"}, status=404)
        if fault == "500":
            return web.Response(status=500, text="Internal Server Error")
        if fault == "malformed":
            return web.json_response({"experiment_id": experiment_id, "variants": "none"})
        if fault == "disconnect":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        variants = [{"variant": v["name"], "sample_size": n, "conversions": x,
                     "conversion_rate": x / n if n else 0.0, "mean_value": 1.5, "std_dev": 0.5,
                     "confidence_interval": [1.0, 2.0]}
                    for v, (n, x) in zip(record["variants"], self.counts[experiment_id])]
        # The upstream's own verdict, deliberately wrong: the service must not use it.
        return web.json_response({"experiment_id": experiment_id, "experiment_name": record["name"],
                                  "status": record["status"], "variants": variants,
                                  "control_variant": record["variants"][0]["name"], "winner": "treatment",
                                  "statistical_significance": True, "p_value": 0.0001, "confidence_level": 0.95,
                                  "effect_size": 9.9, "recommendation": "✅ Winner: treatment",
                                  "sample_size_per_variant": 0, "total_conversions": 0})
