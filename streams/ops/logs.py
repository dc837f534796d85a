"""The worker's log format: ``GOVERNOR_LOG_FORMAT=text`` (the default, for people) or
``json`` (one object a line, for log collectors).

>>> import logging, orjson
>>> record = logging.LogRecord("governor.worker", logging.WARNING, "", 0,
...                            "policy bundle %s loaded", ("ab12",), None)
>>> record.created = 0.0
>>> orjson.loads(JsonFormatter().format(record))["time"]
'1970-01-01T00:00:00.000Z'
>>> orjson.loads(JsonFormatter().format(record))["message"]
'policy bundle ab12 loaded'
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "error": "ERROR"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO-8601), ``level``, ``logger``,
    ``message``, and ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {"time": stamp.replace("+00:00", "Z"),
                                 "level": record.levelname.lower(), "logger": record.name,
                                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def logging_config(log_format: str, log_level: str) -> dict[str, Any] | None:
    """The worker's ``logging.config`` dictionary for ``log_format`` (``None``: Faust's
    own text format)."""
    if log_format != "json":
        return None
    return {"version": 1, "merge": True,
            "formatters": {"json": {"()": JsonFormatter}},
            "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                     "level": _LEVELS.get(log_level, "WARNING")}}}
