"""Structured logs: one JSON object per line, with an event's fields when it has them.

Event records (``tokensmith.events``) carry ``event`` and ``event_data`` extras; those are
ids and timestamps only, never a token or a secret (see ``events.py``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


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


def configure(level: int = logging.INFO) -> None:
    """Send the ``tokensmith`` logger hierarchy to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("tokensmith")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
