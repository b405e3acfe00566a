"""Structured logs: one JSON object per line, with an event's fields when it has them.

Event records (``tokensmith.events``) carry ``event`` and ``event_data`` extras; those are
ids and timestamps only, never a token or a secret (see ``events.py``).
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

# uvicorn's own loggers (uvicorn/config.py LOGGING_CONFIG) and ours.
_LOGGERS = ("tokensmith", "uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            body["event"] = event
            body.update(getattr(record, "event_data", {}))
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, separators=(",", ":"))


def dict_config(level: int = logging.INFO) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` that sends ours and uvicorn's loggers to stderr as
    JSON lines. Handed to uvicorn as ``log_config``, every worker process applies it, so
    ``serve --workers N --log-json`` logs as JSON in each of them (issue #13)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            name: {"handlers": ["stderr"], "level": level, "propagate": False} for name in _LOGGERS
        },
    }


def configure(level: int = logging.INFO) -> None:
    """Send ours and uvicorn's loggers to stderr as JSON lines, in this process."""
    logging.config.dictConfig(dict_config(level))
