"""Reading OAuth form bodies strictly (RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662 §2.1).

Only ``application/x-www-form-urlencoded``; a size cap before parsing; a parameter sent
twice is refused ("MUST NOT be included more than once"); UTF-8 only.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from tokensmith.errors import InvalidRequest
from tokensmith.http.errors import OAuthError

MAX_FORM_BYTES = 16 * 1024


async def read_form(request: Request) -> dict[str, str]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise OAuthError("invalid_request", "request body too large", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", "request body too large", 413)
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not UTF-8 form data") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidRequest(f"parameter {name!r} is repeated")
        form[name] = value
    return form


def required(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise InvalidRequest(f"missing parameter {name!r}")
    return value
