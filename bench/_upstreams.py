"""The demo's simulated upstreams as a process of their own, for benchmarks that need latency.

``python -m bench._upstreams LATENCY_SECONDS WORKDIR`` starts every simulated upstream with
every response delayed by ``LATENCY_SECONDS``, prints one JSON line saying where they listen (the
environment variables that point the service at them, and the secrets they expect), and serves
until interrupted. The service is then started with that environment -- the same clients and code
paths as in production -- while the upstreams' own work stays out of the service's process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from exporter.demo.runner import DemoUpstreams, start_demo_upstreams


def service_environment(demo: DemoUpstreams) -> dict[str, str]:
    """The service's environment variables (docs/configuration.md#environment-variables) for these upstreams."""
    return {
        "PLAUSIBLE_URL": demo.plausible_url,
        "PLAUSIBLE_API_KEY": demo.plausible_api_key,
        "PLAUSIBLE_SITE_ID": demo.plausible_site_id,
        "EXPERIMENTATION_URL": demo.experimentation_url,
        "FEEDBACK_URL": demo.feedback_url,
        "FEEDBACK_ADMIN_TOKEN": demo.feedback_admin_token,
        "EVENTS_PATH": str(demo.events_path),
    }


async def serve(latency_s: float, workdir: Path) -> None:
    demo = await start_demo_upstreams(workdir=workdir, latency_s=latency_s)
    try:
        print(json.dumps(service_environment(demo)), flush=True)
        await asyncio.Event().wait()
    finally:
        await demo.close()


if __name__ == "__main__":
    try:
        asyncio.run(serve(float(sys.argv[1]), Path(sys.argv[2])))
    except KeyboardInterrupt:
        pass
