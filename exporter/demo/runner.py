"""Start every simulated upstream of the demo on loopback, all from one population.

``start_demo_upstreams`` generates the population, writes the identified events file, and
serves the simulated Plausible (v1 and v2), Experimentation and Feedback services on ephemeral
ports. The returned :class:`DemoUpstreams` holds what a configuration needs to point the
service at them: URLs, the per-run secrets, the events file and the metrics measured on its
experiment exposures.

Simulated time starts at ``now`` and advances with the wall clock, so data keeps arriving while
the demo runs (the population extends a day past ``now``). The Plausible app takes that
simulated epoch clock directly; the platform services take ``now`` plus a wall clock and derive
the same simulated time themselves.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from exporter.demo.events_file import write_events_file
from exporter.demo.exposures import EXPERIMENT_METRICS
from exporter.demo.plausible import build_plausible_app
from exporter.demo.population import generate_population

DEMO_SITE_ID = "backstage.fawkes.idp"
EVENTS_FILE_NAME = "events.jsonl.gz"


@dataclass
class DemoUpstreams:
    """Where the demo's upstreams listen, and the secrets they expect (fresh every run)."""

    plausible_url: str
    plausible_api_key: str = field(repr=False)
    plausible_site_id: str
    experimentation_url: str
    feedback_url: str
    feedback_admin_token: str = field(repr=False)
    events_path: Path
    # The experiments' metrics on the events file's exposures (the experiment_metrics configuration).
    experiment_metrics: dict[str, Any] = field(default_factory=lambda: EXPERIMENT_METRICS)
    _runners: list[web.AppRunner] = field(default_factory=list, repr=False)

    async def close(self) -> None:
        """Stop every server (idempotent)."""
        while self._runners:
            await self._runners.pop().cleanup()


async def start_demo_upstreams(
    *,
    workdir: Path,
    seed: int = 42,
    now: datetime | None = None,
    host: str = "127.0.0.1",
    latency_s: float = 0.0,
) -> DemoUpstreams:
    """Generate the population, write the events file into ``workdir``, start the servers."""
    # The other services' modules are imported here, not at the top: the demo is optional and
    # they pull in their own simulations.
    from exporter.demo.experimentation import build_experimentation_app
    from exporter.demo.feedback import build_feedback_app

    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    started = time.time()
    now_ts = now.timestamp()

    def simulated_epoch() -> float:
        return now_ts + (time.time() - started)

    population = generate_population(seed, now=now)
    workdir.mkdir(parents=True, exist_ok=True)
    events_path = workdir / EVENTS_FILE_NAME
    write_events_file(population, events_path, upto=now_ts)

    api_key = secrets.token_urlsafe(24)
    admin_token = secrets.token_urlsafe(24)
    user_ids = population.user_ids
    apps = [
        build_plausible_app(
            population,
            api_key=api_key,
            site_id=DEMO_SITE_ID,
            clock=simulated_epoch,
            latency_s=latency_s,
        ),
        build_experimentation_app(seed=seed, now=now, user_ids=user_ids, latency_s=latency_s),
        build_feedback_app(
            seed=seed, now=now, user_ids=user_ids, admin_token=admin_token, latency_s=latency_s
        ),
    ]
    runners: list[web.AppRunner] = []
    try:
        urls = [await _serve(app, host, runners) for app in apps]
    except BaseException:
        for runner in reversed(runners):
            await runner.cleanup()
        raise
    plausible_url, experimentation_url, feedback_url = urls
    return DemoUpstreams(
        plausible_url=plausible_url,
        plausible_api_key=api_key,
        plausible_site_id=DEMO_SITE_ID,
        experimentation_url=experimentation_url,
        feedback_url=feedback_url,
        feedback_admin_token=admin_token,
        events_path=events_path,
        _runners=runners,
    )


async def _serve(app: web.Application, host: str, runners: list[web.AppRunner]) -> str:
    """Serve ``app`` on an ephemeral port of ``host``; return its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    runners.append(runner)
    await web.TCPSite(runner, host, 0).start()
    bound_host, port = runner.addresses[0][:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    return f"http://{url_host}:{port}"
