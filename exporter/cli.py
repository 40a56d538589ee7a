"""The ``analytics-dashboard`` command: ``serve``, ``check-config``, ``export`` and ``report``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

import yaml

from . import __version__
from .config import Config, ConfigError, config_path, effective_config, load_config, missing_files
from .timeranges import TimeRange

if TYPE_CHECKING:
    from aiohttp import web

    from .service import AnalyticsService

log = logging.getLogger("analytics_dashboard")
# On SIGTERM the listener closes at once; requests in flight get this long to finish (they normally
# take milliseconds) before they are cancelled, well inside Kubernetes' default 30 s grace period.
SHUTDOWN_GRACE_SECONDS = 5.0
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Connections the kernel queues until the event loop accepts them. At the default 128, a thousand
# clients connecting at once overflow it: the kernel drops their SYNs and they retry 1 s, then 3 s
# later. The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096
# The demo has no API token and simulated data: it listens on this machine only unless --host says otherwise.
DEMO_HOST = "127.0.0.1"


class StartupError(Exception):
    """The service cannot start for a reason outside its configuration file (e.g. the port is taken)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 1
    except StartupError as error:
        print(f"cannot start: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analytics-dashboard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the exporter and JSON API")
    _config_option(serve)
    serve.add_argument("--host", help="interface to listen on (default: server.host, 0.0.0.0; with --demo, 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port to listen on (default: server.port, 8000)")
    serve.add_argument("--demo", action="store_true", help="start built-in simulated upstreams and use them")
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate and print the effective configuration")
    _config_option(check)
    check.set_defaults(run=_check_config)

    export = commands.add_parser("export", help="write the dashboard once, as JSON, CSV, xlsx or PDF, to stdout")
    export.add_argument("--format", required=True, metavar="{json,csv,xlsx,pdf}", help="json: the dashboard object; "
                        "csv: the tidy table (section,name,dimension,value,unit,time_range); xlsx: a sheet per "
                        "section; pdf: a readable report (xlsx and pdf need the optional extra 'reports')")
    export.add_argument("--time-range", choices=TimeRange.names(), help="the window (default: the API's, 30d)")
    _config_option(export)
    export.add_argument("--demo", action="store_true", help="start built-in simulated upstreams and use them")
    export.set_defaults(run=_export)

    report = commands.add_parser("report", help="compose a configured report now: write it as an email "
                                 "(.eml) to stdout, or send it with --send")
    report.add_argument("name", help="the report's name (reports: in the configuration)")
    report.add_argument("--send", action="store_true", help="send it to its recipients through smtp: instead")
    _config_option(report)
    report.add_argument("--demo", action="store_true", help="start built-in simulated upstreams and use them")
    report.set_defaults(run=_report)
    return parser


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1..65535)")
    return port


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config",
                        help="YAML configuration file (default: $ANALYTICS_CONFIG or config/analytics.yaml)")


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    path, chosen = config_path(args.config)
    if not chosen and not path.exists():
        print(f"no configuration file at {path}: the built-in defaults (and the environment) apply", file=sys.stderr)
    missing = missing_files(config)
    if missing:
        raise ConfigError("; ".join(missing))
    print(yaml.safe_dump(effective_config(config), sort_keys=False), end="")
    return 0


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _setup_logging(config.server.log_level)
    asyncio.run(_serve_async(args, config))
    return 0


async def _serve_async(args: argparse.Namespace, loaded: Config) -> None:
    from aiohttp import web

    from api.app import create_app

    from .service import AnalyticsService

    stop = _shutdown_signal()  # from here on (demo start-up included) a signal means a clean stop
    async with _demo_if_asked(args, loaded) as config:
        host = args.host or (DEMO_HOST if args.demo else config.server.host)
        port = args.port or config.server.port
        service = AnalyticsService(config)
        # aiohttp waits up to shutdown_timeout for a handler to finish, then as long again after
        # cancelling its request: half the grace period each.
        runner = web.AppRunner(create_app(service), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS / 2)
        await runner.setup()
        try:
            await _listen(web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG), host, port)
            log.info("analytics-dashboard %s listening on http://%s:%d (metrics at /metrics)", __version__, host, port)
            service.health.log_disabled()
            # Warm the cache so /health and the first scrape find data instead of cold sources.
            warm_up = asyncio.create_task(service.refresh_metrics(config.server.request_timeout_seconds))
            received = await stop
            log.info("%s received: closing the listener; requests in flight have %g s to finish",
                     received.name, SHUTDOWN_GRACE_SECONDS)
            warm_up.cancel()
        finally:
            # Waits for the requests in flight, then the app's cleanup ends the loads still running
            # and closes the upstream sessions (AnalyticsService.close).
            await runner.cleanup()
        log.info("stopped")


def _shutdown_signal() -> asyncio.Future[signal.Signals]:
    """A future set by the first SIGTERM or SIGINT; a second one gets the default action (stop now)."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def handle(signum: signal.Signals) -> None:
        for each in SHUTDOWN_SIGNALS:
            loop.remove_signal_handler(each)
        received.set_result(signum)

    for signum in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(signum, handle, signum)
    return received


async def _listen(site: "web.TCPSite", host: str, port: int) -> None:
    try:
        await site.start()
    except OSError as error:  # port taken, address not on this machine, no permission
        raise StartupError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def _export(args: argparse.Namespace) -> int:
    # The API's own code renders the export; it is imported only when exporting (it is heavy).
    from api.export import EXPORT_QUERY, FORMATS, TEXT_FORMATS
    from exporter.reports.render import ReportsExtraMissing

    if args.format not in FORMATS:
        print(f"unknown export format {args.format!r}; formats: {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    binary = args.format not in TEXT_FORMATS
    if binary and sys.stdout.isatty():
        print(f"{args.format} is a binary file: redirect the output (> dashboard.{args.format})", file=sys.stderr)
        return 2
    config = load_config(args.config)
    _setup_logging(config.server.log_level)  # logs go to stderr; stdout carries only the export
    time_range = TimeRange(args.time_range or EXPORT_QUERY["time_range"].default)
    try:
        body = asyncio.run(_export_async(args, config, time_range))
    except ReportsExtraMissing as error:
        print(f"cannot export: {error}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(body if binary or body.endswith(b"\n") else body + b"\n")
    sys.stdout.flush()
    return 0  # sources that are down show in the export itself


async def _export_async(args: argparse.Namespace, loaded: Config, time_range: TimeRange) -> bytes:
    from api.export import render_export

    async with _service(args, loaded) as service:
        dashboard = await _dashboard(service, time_range)
    return render_export(service.areas, dashboard, args.format).body


@contextlib.asynccontextmanager
async def _service(args: argparse.Namespace, loaded: Config) -> AsyncIterator["AnalyticsService"]:
    """A service for one command (with ``--demo``, over the simulated upstreams), closed on the way out."""
    from .service import AnalyticsService

    async with _demo_if_asked(args, loaded) as config:
        service = AnalyticsService(config)
        try:
            yield service
        finally:
            await _cancel_other_tasks()  # loads nobody waits for any more must not outlive the clients
            await service.close()


async def _dashboard(service: "AnalyticsService", time_range: TimeRange) -> dict[str, Any]:
    from api.dashboard import build_dashboard
    from api.responses import Responses

    return await build_dashboard(service, Responses(service.health, service.clock), time_range)


def _report(args: argparse.Namespace) -> int:
    from api.reports import UnknownReport
    from exporter.reports.render import ReportsExtraMissing
    from exporter.reports.smtp import LoginRefused, SendFailed

    config = load_config(args.config)
    configured = [report.name for report in config.reports]
    if args.name not in configured:  # said before the demo or any source is started
        print(UnknownReport(args.name, configured), file=sys.stderr)
        return 2
    _setup_logging(config.server.log_level)  # logs go to stderr; stdout carries only the message
    try:
        message = asyncio.run(_report_async(args, config))
    except LoginRefused as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 1
    except (SendFailed, ReportsExtraMissing) as error:
        print(f"report {args.name} was not sent: {error}" if args.send else f"cannot compose: {error}",
              file=sys.stderr)
        return 1
    if not args.send:
        sys.stdout.buffer.write(message)
        sys.stdout.flush()
    return 0


async def _report_async(args: argparse.Namespace, loaded: Config) -> bytes:
    """The report's message as of now (as sent, with --send)."""
    from api.reports import ReportDesk
    from api.responses import Responses
    from api.worker import Worker

    async with _service(args, loaded) as service:
        desk = ReportDesk(service, Responses(service.health, service.clock), Worker())
        report = desk.find(args.name)
        message = await desk.compose(report)
    if args.send:
        await desk.deliver(report, message)
    return message.as_bytes()


async def _cancel_other_tasks() -> None:
    others = asyncio.all_tasks() - {asyncio.current_task()}
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


@contextlib.asynccontextmanager
async def _demo_if_asked(args: argparse.Namespace, config: Config) -> AsyncIterator[Config]:
    """``config`` as is; with ``--demo``, pointed at simulated upstreams that run until the block exits."""
    if not args.demo:
        yield config
        return
    from .demo.runner import start_demo_upstreams

    with tempfile.TemporaryDirectory(prefix="analytics-demo-") as workdir:
        demo = await start_demo_upstreams(workdir=Path(workdir))
        try:
            log.info("demo mode: simulated upstreams on loopback, events file %s", demo.events_path)
            yield load_config(args.config, overrides=demo_overrides(demo))
        finally:
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
        # The demo's events carry each user's team: the team views (filters, breakdowns, Grafana's team variable).
        "dimensions": [{"name": "team", "property": "team"}],
        "metrics.breakdowns": ["team"],
        "experiment_metrics": demo.experiment_metrics,
    }


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
