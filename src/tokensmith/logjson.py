"""Structured logs: one JSON object per line, with an event's fields when it has them;
and the access log's redaction of query values.

Event records (``tokensmith.events``) carry ``event`` and ``event_data`` extras; those are
ids and timestamps only, never a token or a secret (see ``events.py``).
"""

from __future__ import annotations

import copy
import json
import logging
import logging.config
from collections.abc import Mapping
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


class QueryValuesRedacted(logging.Filter):
    """uvicorn's access line names the path with its query string. Credentials have no place
    there (RFC 6749 §2.3.1, RFC 6750 §2.3), but clients put a ``client_secret`` or an
    ``access_token`` there anyway, and the log must not keep them: every value of the query
    is shown as ``…``, its names stay (``/revocations?since=…``); a part without ``=``
    (``?<secret>``) is all value."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.protocols.http: (client_addr, method, full_path, http_version, status_code)
        if isinstance(args, tuple) and len(args) == 5 and "?" in str(args[2]):
            path, query = str(args[2]).split("?", 1)
            record.args = (*args[:2], f"{path}?{_redacted(query)}", *args[3:])
        return True


def _redacted(query: str) -> str:
    names = (part.partition("=") for part in query.split("&"))
    return "&".join(f"{name}=…" if sep else "…" for name, sep, _value in names)


def access_log_redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a ``dictConfig``, uvicorn's ``LOGGING_CONFIG``) with
    :class:`QueryValuesRedacted` on the ``uvicorn.access`` logger. Handed to uvicorn as
    ``log_config``, so each worker process applies it too."""
    redacted = copy.deepcopy(dict(config))
    redacted.setdefault("filters", {})["query_values"] = {"()": QueryValuesRedacted}
    access = redacted.setdefault("loggers", {}).setdefault("uvicorn.access", {})
    access["filters"] = [*access.get("filters", []), "query_values"]
    return redacted
