"""The ``analytics-dashboard`` command: ``serve``, ``check-config`` and ``export``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import yaml

from . import __version__
from .config import Config, ConfigError, effective_config, load_config

log = logging.getLogger("analytics_dashboard")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analytics-dashboard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the exporter and JSON API")
    _config_option(serve)
    serve.add_argument("--host", help="interface to listen on (default: server.host, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port, 8000)")
    serve.add_argument("--demo", action="store_true", help="start built-in simulated upstreams and use them")
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate and print the effective configuration")
    _config_option(check)
    check.set_defaults(run=_check_config)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML configuration file (default: $ANALYTICS_CONFIG or config/analytics.yaml)")


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(yaml.safe_dump(effective_config(config), sort_keys=False), end="")
    return 0


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _setup_logging(config.server.log_level)
    asyncio.run(_serve_async(args, config))
    return 0


async def _serve_async(args: argparse.Namespace, config: Config) -> None:
    from aiohttp import web

    from api.app import create_app

    from .service import AnalyticsService

    with tempfile.TemporaryDirectory(prefix="analytics-demo-") as workdir:
        demo = None
        if args.demo:
            from .demo.runner import start_demo_upstreams

            demo = await start_demo_upstreams(workdir=Path(workdir))
            config = load_config(args.config, overrides=demo_overrides(demo))
            log.info("demo mode: simulated upstreams on loopback, events file %s", demo.events_path)
        host = args.host or config.server.host
        port = args.port or config.server.port
        service = AnalyticsService(config)
        runner = web.AppRunner(create_app(service), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("analytics-dashboard %s listening on http://%s:%d (metrics at /metrics)", __version__, host, port)
        # Warm the cache so /health and the first scrape find data instead of cold sources.
        warm_up = asyncio.create_task(service.refresh_metrics(config.server.request_timeout_seconds))
        try:
            await asyncio.Event().wait()
        finally:
            warm_up.cancel()
            await runner.cleanup()
            if demo is not None:
                await demo.close()


def demo_overrides(demo: Any) -> dict[str, Any]:
    """Point every source at the simulated upstreams (same clients and code paths as production)."""
    return {
        "sources.plausible.url": demo.plausible_url,
        "sources.plausible.api_key": demo.plausible_api_key,
        "sources.plausible.site_id": demo.plausible_site_id,
        "sources.plausible.api_version": "auto",
        "sources.experimentation.url": demo.experimentation_url,
        "sources.feedback.url": demo.feedback_url,
        "sources.feedback.admin_token": demo.feedback_admin_token,
        "events.path": str(demo.events_path),
    }


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
