"""``GET /openapi.json``: an OpenAPI 3.1 description of every route of ``create_app``.

Written by hand as data, built once: the routes are Starlette handlers reading forms
strictly (``http/forms.py``), so nothing could be derived from type hints. Error bodies are
RFC 6749 §5.2 JSON (``http/errors.py``); the form fields follow RFC 6749 §4.4.2 and §6,
RFC 7009 §2.1 and RFC 7662 §2.1. ``tests/http/test_openapi.py`` checks the document with a
validator and against the app's routes; ``tests/test_schemathesis.py`` checks the live
service against it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tokensmith.grants import GRANTS
from tokensmith.http.cookies import COOKIE_NAME, CSRF_HEADER
from tokensmith.revocation.log import KINDS

PATH = "/openapi.json"
_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"

Schema = dict[str, Any]


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _header(description: str, schema: Schema | None = None) -> Schema:
    return {"description": description, "schema": schema or {"type": "string"}}


def _json_response(description: str, schema: Schema, *headers: str) -> Schema:
    response: Schema = {"description": description, "content": {_JSON: {"schema": schema}}}
    if headers:
        response["headers"] = {name: _ref("headers", name) for name in headers}
    return response


def _empty_response(description: str, *headers: str) -> Schema:
    return {"description": description, "headers": {n: _ref("headers", n) for n in headers}}


def _object(properties: dict[str, Schema], *required: str, closed: bool = False) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


_TEXT: Schema = {"type": "string"}
# ``http/forms.py`` ``required``: an empty value is a missing one.
_REQUIRED_TEXT: Schema = {"type": "string", "minLength": 1}
_SCOPE: Schema = {"type": "string", "description": "space-separated scopes (RFC 6749 §3.3)"}

# Client authentication in the form (``client_secret_post``, or ``none`` with the id only);
# ``client_secret_basic`` is the ``clientBasic`` security scheme (``http/clientauth.py``).
# Sending both is refused: one method per request (RFC 6749 §2.3).
_CLIENT_FIELDS: dict[str, Schema] = {
    "client_id": {"type": "string", "description": "not with Basic credentials"},
    "client_secret": {"type": "string", "writeOnly": True},
}

# One form per grant of ``tokensmith.grants.GRANTS``: its own fields besides the client's.
_GRANT_FIELDS: dict[str, tuple[dict[str, Schema], tuple[str, ...]]] = {
    "refresh_token": (
        {
            "refresh_token": {
                **_REQUIRED_TEXT,
                "description": f"absent for cookie-mode clients (``{COOKIE_NAME}`` cookie)",
            },
            "scope": _SCOPE,
        },
        (),
    ),
    "client_credentials": (
        {"scope": _SCOPE, "audience": _TEXT, "resource": _TEXT},
        (),
    ),
}


def _grant_form(grant: str) -> Schema:
    fields, required = _GRANT_FIELDS[grant]
    properties = {"grant_type": {"type": "string", "const": grant}, **fields, **_CLIENT_FIELDS}
    return {"title": grant, **_object(properties, "grant_type", *required)}


# RFC 7009 §2.1 and RFC 7662 §2.1: the token, a hint, the client's credentials.
_TOKEN_FORM = _object(
    {"token": _REQUIRED_TEXT, "token_type_hint": _TEXT, **_CLIENT_FIELDS}, "token"
)


def _form_body(schema: Schema) -> Schema:
    return {"required": True, "content": {_FORM: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    """The RFC 6749 §5.2 error responses a form endpoint can give."""
    described = {
        400: ("Bad request (invalid_request, invalid_grant, invalid_scope, ...)", "Error"),
        401: ("Client authentication failed (invalid_client)", "ClientError"),
        403: ("Cookie mode: wrong Origin or no CSRF header (access_denied)", "Error"),
        413: ("The form is larger than 16 KiB (invalid_request)", "Error"),
        503: ("The store is busy or the server full (temporarily_unavailable)", "Unavailable"),
    }
    return {str(s): _ref("responses", described[s][1]) for s in statuses}


_FORM_ERRORS = (400, 401, 413, 503)


def _form_operation(
    summary: str, body: Schema, ok: dict[str, Schema], *errors: int
) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"clientBasic": []}, {}],
        "requestBody": _form_body(body),
        "responses": {**ok, **_errors(*_FORM_ERRORS, *errors)},
    }


# RFC 9449 §4: the proof a DPoP client sends with the request.
_DPOP_PROOF: Schema = {
    "name": "DPoP",
    "in": "header",
    "description": "A DPoP proof JWT for this request (RFC 9449 §4); with it the access "
    "token is DPoP-bound (token_type DPoP)",
    "schema": _TEXT,
}

_PREFLIGHT = {
    "summary": "CORS preflight (cookie-mode clients' origins only)",
    "responses": {
        "204": _empty_response(
            "CORS headers for an allowed Origin, none otherwise",
            "Access-Control-Allow-Origin",
        )
    },
}

_TOKEN_RESPONSE = _object(
    {
        "access_token": _TEXT,
        "token_type": {"type": "string", "enum": ["Bearer", "DPoP"]},
        "expires_in": {"type": "integer"},
        "scope": _TEXT,
        "refresh_token": _TEXT,
        "id_token": _TEXT,
    },
    "access_token",
    "token_type",
    "expires_in",
)

_KEY_SET = _object(
    {"keys": {"type": "array", "items": _object({"kty": _TEXT, "kid": _TEXT}, "kty")}},
    "keys",
)

# README "Sessions" (http/sessions.py): the caller's access token (aud = the issuer) names
# the user (sub) and the current session (sid).
_BEARER_ERRORS = {
    "401": {
        "description": "No, invalid or revoked access token (RFC 6750 §3; no `error` when "
        "there was no token at all, §3.1)",
        "headers": {"WWW-Authenticate": _ref("headers", "WWW-Authenticate")},
        "content": {_JSON: {"schema": _object({"error": _TEXT, "error_description": _TEXT})}},
    },
    "403": {
        "description": "The token lacks the scope TOKENSMITH_SESSIONS_SCOPE names "
        "(insufficient_scope, RFC 6750 §3.1)",
        "headers": {"WWW-Authenticate": _ref("headers", "WWW-Authenticate")},
        "content": {_JSON: {"schema": _object({"error": _TEXT, "error_description": _TEXT})}},
    },
    "503": _ref("responses", "Unavailable"),
}
_SESSION = _object(
    {
        "sid": _TEXT,
        "client_id": _TEXT,
        "created_at": {"type": "integer"},
        "last_used_at": {"type": "integer"},
        "ip": {"type": ["string", "null"]},
        "user_agent": {"type": ["string", "null"]},
        "current": {"type": "boolean"},
    },
    "sid",
    "client_id",
    "created_at",
    "last_used_at",
    "current",
)


def _session_operation(summary: str, ok: dict[str, Schema], *params: Schema) -> Schema:
    return {
        "summary": summary,
        "security": [{"accessToken": []}],
        "responses": {**ok, **_BEARER_ERRORS},
        "parameters": [*params, _DPOP_PROOF],
    }


_SESSION_PATHS: dict[str, dict[str, Any]] = {
    "/sessions": {
        "get": _session_operation(
            "The caller's live sessions; the token's own sid is current",
            {
                "200": _json_response(
                    "Newest first",
                    _object({"sessions": {"type": "array", "items": _SESSION}}, "sessions"),
                    "Cache-Control",
                )
            },
        ),
        "options": _PREFLIGHT,
    },
    "/sessions/{sid}": {
        "delete": _session_operation(
            "End one of the caller's sessions (revokes its family)",
            {
                "204": _empty_response("Ended", "Cache-Control"),
                "404": _ref("responses", "Error"),
            },
            {"name": "sid", "in": "path", "required": True, "schema": _TEXT},
        ),
        "options": {
            **_PREFLIGHT,
            "parameters": [{"name": "sid", "in": "path", "required": True, "schema": _TEXT}],
        },
    },
    "/sessions/revoke-others": {
        "post": _session_operation(
            "End every session of the caller but the current one",
            {
                "200": _json_response(
                    "How many ended",
                    _object({"ended": {"type": "integer"}}, "ended"),
                    "Cache-Control",
                )
            },
        ),
        "options": _PREFLIGHT,
    },
}
# ``http/revocations.py``: the revocation feed for resource servers.
_SINCE = {
    "name": "since",
    "in": "query",
    "description": "the cursor of the previous read (0 or absent: every live entry)",
    "schema": {"type": "integer", "minimum": 0},
}
_REVOCATION = _object(
    {
        "id": {"type": "integer", "description": "its cursor; ids grow in commit order"},
        "kind": {
            "enum": list(KINDS),
            "description": "jti: one access token; family: a session (sid); subject: tokens "
            "of the subject issued before at; client_disabled / client_enabled: the "
            "client's tokens while disabled; kid: every token signed with the key",
        },
        "key": {"type": "string", "description": "the jti, sid, sub, client_id or kid"},
        "at": {"type": "number", "description": "when (subject: the not-before time)"},
        "exp": {"type": "number", "description": "after this it no longer matters"},
    },
    "id",
    "kind",
    "key",
    "at",
    "exp",
)
# 403: TOKENSMITH_RESOURCE_SERVER_CLIENTS names others (unauthorized_client).
_FEED_ERRORS = {
    "400": _ref("responses", "Error"),
    "401": _ref("responses", "ClientError"),
    "403": _ref("responses", "Error"),
}

_PATHS: dict[str, dict[str, Any]] = {
    **_SESSION_PATHS,
    "/.well-known/jwks.json": {
        "get": {
            "summary": "The published public keys (RFC 7517 §5)",
            "parameters": [{"name": "If-None-Match", "in": "header", "schema": _TEXT}],
            "responses": {
                "200": {
                    "description": "The JWK Set",
                    "headers": {
                        "Cache-Control": _ref("headers", "Cache-Control"),
                        "ETag": _ref("headers", "ETag"),
                    },
                    "content": {"application/jwk-set+json": {"schema": _KEY_SET}},
                },
                "304": _empty_response("Not modified", "Cache-Control", "ETag"),
            },
        }
    },
    "/.well-known/openid-configuration": {
        "get": {
            "summary": "Discovery metadata (OIDC Discovery 1.0 §3, RFC 8414 §2)",
            "responses": {
                "200": _json_response(
                    "What this service serves",
                    _object({"issuer": _TEXT, "jwks_uri": _TEXT}, "issuer", "jwks_uri"),
                    "Cache-Control",
                )
            },
        }
    },
    "/token": {
        "post": {
            **_form_operation(
                "Refresh (RFC 6749 §6) or client credentials (§4.4)",
                {"oneOf": [_ref("schemas", f"{grant}_form") for grant in GRANTS]},
                {
                    "200": _json_response(
                        "RFC 6749 §5.1", _TOKEN_RESPONSE, "Cache-Control", "DPoP-Nonce"
                    )
                },
                403,
            ),
            "parameters": [_DPOP_PROOF],
        },
        "options": _PREFLIGHT,
    },
    "/revoke": {
        "post": _form_operation(
            "Revoke a token (RFC 7009); unknown tokens too",
            _TOKEN_FORM,
            {"200": _empty_response("Revoked, or nothing to revoke", "Cache-Control")},
        )
    },
    "/introspect": {
        "post": _form_operation(
            "Introspect a token (RFC 7662); confidential clients only",
            _TOKEN_FORM,
            {
                "200": _json_response(
                    "RFC 7662 §2.2",
                    _object({"active": {"type": "boolean"}}, "active"),
                    "Cache-Control",
                )
            },
            403,  # TOKENSMITH_RESOURCE_SERVER_CLIENTS names others (unauthorized_client)
        )
    },
    "/logout": {
        "post": _form_operation(
            "Cookie mode: revoke the cookie's session and expire the cookie",
            _object(_CLIENT_FIELDS),
            {"204": _empty_response("Logged out", "Cache-Control", "Set-Cookie")},
            403,
        ),
        "options": _PREFLIGHT,
    },
    "/revocations": {
        "get": {
            "summary": "What is revoked and can still verify, after a cursor; confidential "
            "clients (resource servers) only",
            "security": [{"clientBasic": []}],
            "parameters": [_SINCE, {"name": "If-None-Match", "in": "header", "schema": _TEXT}],
            "responses": {
                "200": _json_response(
                    "Entries in id order; read again from cursor (at once while more)",
                    _object(
                        {
                            "cursor": {"type": "integer"},
                            "more": {"type": "boolean"},
                            "entries": {"type": "array", "items": _REVOCATION},
                        },
                        "cursor",
                        "more",
                        "entries",
                    ),
                    "Cache-Control",
                    "ETag",
                ),
                "304": _empty_response("Nothing new after since", "Cache-Control", "ETag"),
                **_FEED_ERRORS,
            },
        }
    },
    "/revocations/stream": {
        "get": {
            "summary": "Server-sent events: every entry after the cursor, then each new one "
            "as it commits; a heartbeat with the cursor every 5 s",
            "security": [{"clientBasic": []}],
            "parameters": [
                _SINCE,
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "description": "resume after this entry (wins over since)",
                    "schema": _TEXT,
                },
            ],
            "responses": {
                "200": {
                    "description": "event: revocation (id: the entry's id; data: the entry as "
                    "in GET /revocations) and event: heartbeat (data: {cursor})",
                    "headers": {"Cache-Control": _ref("headers", "Cache-Control")},
                    "content": {"text/event-stream": {"schema": _TEXT}},
                },
                **_FEED_ERRORS,
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness: the process answers",
            "responses": {
                "200": _json_response(
                    "Alive",
                    _object({"status": {"const": "ok"}}, "status", closed=True),
                    "Cache-Control",
                )
            },
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: the database answers and a signing key is active",
            "responses": {
                "200": _json_response(
                    "Ready",
                    _object({"status": {"const": "ready"}}, "status", closed=True),
                    "Cache-Control",
                ),
                "503": _json_response(
                    "Not ready, with short reason codes",
                    _object(
                        {
                            "status": {"const": "unavailable"},
                            "reasons": {
                                "type": "array",
                                "items": {"enum": ["database", "signing_key"]},
                            },
                        },
                        "status",
                        "reasons",
                        closed=True,
                    ),
                    "Cache-Control",
                ),
            },
        }
    },
    PATH: {
        "get": {
            "summary": "This document",
            "responses": {"200": _json_response("OpenAPI 3.1", {"type": "object"})},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (with settings.metrics_token only)",
            "security": [{"metricsBearer": []}],
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": _TEXT}},
                },
                "401": {
                    "description": "No or wrong token (RFC 6750 §3)",
                    "headers": {"WWW-Authenticate": _ref("headers", "WWW-Authenticate")},
                    "content": {_JSON: {"schema": _ref("schemas", "Error")}},
                },
            },
        }
    },
}

# RFC 6749 §5.2; a 5xx has no description.
_ERROR = _object({"error": _TEXT, "error_description": _TEXT}, "error")

_COMPONENTS: dict[str, Any] = {
    "schemas": {
        "Error": _ERROR,
        **{f"{grant}_form": _grant_form(grant) for grant in GRANTS},
    },
    "responses": {
        "Error": _json_response("RFC 6749 §5.2 error", _ref("schemas", "Error"), "Cache-Control"),
        "ClientError": _json_response(
            "RFC 6749 §5.2 invalid_client", _ref("schemas", "Error"), "WWW-Authenticate"
        ),
        "Unavailable": _json_response(
            "Retry later", _ref("schemas", "Error"), "Cache-Control", "Retry-After"
        ),
    },
    "headers": {
        "Cache-Control": _header("no-store on every token response (RFC 6749 §5.1)"),
        "ETag": _header("The version of what was sent; send it back in If-None-Match"),
        "WWW-Authenticate": _header("The scheme to authenticate with (RFC 6749 §5.2)"),
        "Retry-After": _header("Seconds to wait (RFC 9110 §10.2.3)", {"type": "integer"}),
        "DPoP-Nonce": _header("The nonce to put in the next DPoP proof (RFC 9449 §8)"),
        "Set-Cookie": _header(f"Expires the {COOKIE_NAME} cookie"),
        "Access-Control-Allow-Origin": _header(
            f"The request's Origin; with the other CORS headers and {CSRF_HEADER} allowed"
        ),
    },
    "securitySchemes": {
        "clientBasic": {
            "type": "http",
            "scheme": "basic",
            "description": "client_secret_basic (RFC 6749 §2.3.1)",
        },
        "metricsBearer": {"type": "http", "scheme": "bearer"},
        "accessToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token of this issuer (aud = the issuer, RFC 9068); a "
            "DPoP-bound one as `Authorization: DPoP <token>` with its proof (RFC 9449 §7)",
        },
    },
}


@functools.lru_cache(maxsize=4)
def document(paths: frozenset[str]) -> dict[str, Any]:
    """The description of the routes in ``paths`` (``/metrics`` is one only when mounted)."""
    from tokensmith import __version__

    unknown = paths - _PATHS.keys()
    if unknown:
        raise ValueError(f"routes without an OpenAPI description: {sorted(unknown)}")
    return {
        "openapi": "3.1.0",
        "info": {"title": "tokensmith", "version": __version__},
        "paths": {path: item for path, item in _PATHS.items() if path in paths},
        "components": _COMPONENTS,
    }


def endpoint(paths: Iterable[str]) -> Callable[[Request], Awaitable[Response]]:
    """``GET /openapi.json`` (``PATH``) for an app serving ``paths`` and itself, serialised
    once."""
    body = json.dumps(document(frozenset([*paths, PATH]))).encode()

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return openapi
