"""Running a worker: prepare, build the app, run it until interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams.ops.logs import logging_config
from streams.ops.stackfile import removing, write_stack_file
from streams.pipeline.app import create_app
from streams.pipeline.console import Status, UpConsole
from streams.pipeline.prepare import prepare
from streams.settings import Settings

STATUS_SECONDS = 1.0
"""How often ``governor up``'s status line is brought up to date."""


def run_worker(settings: Settings, extra_info: dict[str, Any] | None = None,
               console: bool = False) -> int:
    """Run the worker until interrupted; return its exit code.

    Writes the stack file (where the query endpoint and broker are) while it runs.
    ``console``: show verdicts, pages and a status line on standard output
    (:class:`~streams.pipeline.console.UpConsole`, for ``governor up``).
    """
    import faust

    app, routes = create_app(settings, prepare(settings))
    up = UpConsole(lambda: Status.of(routes)) if console else None
    if up is not None:
        routes.watchers.append(up.on_event)

        @app.timer(interval=STATUS_SECONDS)
        async def show_status() -> None:
            up.tick()
    info = {"bootstrap": settings.kafka_bootstrap, "clickhouse": settings.clickhouse_dsn,
            "query_url": f"http://{settings.query_host}:{settings.query_port}",
            "topic_prefix": settings.topic_prefix, **(extra_info or {})}
    stack_file: Path = write_stack_file(settings, **info)
    with removing(stack_file):
        worker = faust.Worker(app, loglevel=settings.log_level, quiet=True,
                              redirect_stdouts=False, override_logging=True,
                              logging_config=logging_config(settings.log_format,
                                                            settings.log_level))
        worker.spinner = None  # its terminal animation garbles `governor up` output
        try:
            worker.execute_from_commandline()
        except SystemExit as exit_:
            return int(exit_.code or 0)
        finally:  # after the timers and the ingest have stopped: nothing more is paged
            routes.close(5.0)
            if up is not None:
                up.close()
    return 0
