"""The gateway's log: one format for its own lines and its server's (uvicorn, gunicorn).

Text, the default, one line per event:

    2026-12-05T03:10:00.123Z gw1 4242 INFO shifter.gateway.workers [-]: job 4 ... claimed

an ISO-8601 UTC timestamp, the host, the pid, the level, the logger and the request id (`-`
outside a request), then the message. A message of several lines (a tool's output, a
traceback) is folded into that one line with ` | ` between its lines, so a line is an
event for grep, journald and log shippers alike. `LogFormat: "json"` writes JSON lines
instead: `{"time", "host", "pid", "level", "logger", "request_id", "message"}`, plus
`"exception"` with the traceback. `LogFile` writes to a file instead of stderr, reopened
when logrotate moves it away (WatchedFileHandler; no copytruncate needed).

The server's loggers (`uvicorn.*`, `gunicorn.*`) lose their own handlers and go through the
same one; `uvicorn.access` is quiet, since the gateway logs each request itself
(`app.RequestGuard`), polls at DEBUG.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import os
import time
from typing import Any

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn", "gunicorn.error",
                  "gunicorn.access")
QUIET_LOGGERS = {"uvicorn.access": "WARNING", "gunicorn.access": "WARNING", "httpx": "WARNING"}
FOLD = " | "


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (`-` outside a request), for the formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """`TIME HOST PID LEVEL LOGGER [REQUEST-ID]: MESSAGE`, folded into one line."""

    def __init__(self) -> None:
        super().__init__()
        self.host = os.uname().nodename

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        folded = FOLD.join(line.rstrip() for line in text.splitlines() if line.strip())
        request_id = getattr(record, "request_id", "-")
        return (f"{_timestamp(record)} {self.host} {record.process} {record.levelname} "
                f"{record.name} [{request_id}]: {folded}")


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def __init__(self) -> None:
        super().__init__()
        self.host = os.uname().nodename

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record), "host": self.host, "pid": record.process,
            "level": record.levelname, "logger": record.name,
            "request_id": getattr(record, "request_id", "-"), "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def make_handler(log_file: str | None, log_format: str) -> logging.Handler:
    """The one handler of the gateway's log."""
    handler: logging.Handler
    if log_file:
        handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(level: str, *, log_file: str | None = None,
                      log_format: str = "text") -> None:
    """Log through `make_handler` unless something configured the root logger already
    (a test's capture): then only add the request id to its handlers. The server's loggers
    are routed through the root either way."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(make_handler(log_file, log_format))
        root.setLevel(level.upper())
    for handler in root.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
    for name in SERVER_LOGGERS:
        server = logging.getLogger(name)
        for handler in list(server.handlers):
            server.removeHandler(handler)
        server.propagate = True
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet)


def uvicorn_log_config(level: str, *, log_file: str | None = None,
                       log_format: str = "text") -> dict[str, Any]:
    """The same set-up as a logging dictConfig, for uvicorn's `log_config` (it applies it
    in every server process it starts)."""
    handler: dict[str, Any] = {
        "formatter": "gateway", "filters": ["request_id"],
    }
    if log_file:
        handler.update({"class": "logging.handlers.WatchedFileHandler", "filename": log_file,
                        "encoding": "utf-8"})
    else:
        handler.update({"class": "logging.StreamHandler", "stream": "ext://sys.stderr"})
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"gateway": {"()": formatter}},
        "handlers": {"gateway": handler},
        "root": {"handlers": ["gateway"], "level": level.upper()},
        "loggers": {
            **{name: {"handlers": [], "propagate": True} for name in SERVER_LOGGERS},
            **{name: {"level": quiet} for name, quiet in QUIET_LOGGERS.items()},
        },
    }
