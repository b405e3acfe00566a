"""A Flask API protected by ``tokensmith.integrations.flask``.

    python examples/flask_api.py

``GET /api/health`` is public; ``GET /api/me`` needs an access token for the audience
``example-api`` holding the ``read`` scope, and answers with its claims. The keys and the
revocation list are those of a local ``Tokensmith`` configured by the ``TOKENSMITH_*``
environment (``tokensmith token issue --aud example-api --scope read ...`` mints
one). ``EXAMPLE_PORT`` picks the port (default: a free one); the host is 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from flask import Flask, g, jsonify
from flask.typing import ResponseReturnValue

if __package__ in (None, ""):  # run as a script: make `tokensmith` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tokensmith import Settings, Tokensmith
from tokensmith.integrations.flask import TokensmithGuard, require_token

#: The ``aud`` this API requires.
AUDIENCE = "example-api"


def create_app(**guard_options: Any) -> Flask:
    """The API; ``guard_options`` are ``BearerGuard``'s (``tokensmith=ts`` or
    ``keys=..., issuer=...``)."""
    app = Flask(__name__)
    TokensmithGuard(app, audience=AUDIENCE, realm="example-api", **guard_options)

    @app.get("/api/health")
    def health() -> ResponseReturnValue:
        return jsonify(ok=True)

    @app.get("/api/me")
    @require_token(scopes=["read"])
    def me() -> ResponseReturnValue:
        return jsonify(g.token_claims)

    return app


def main() -> None:
    ts = Tokensmith(Settings.from_env())
    ts.setup()
    port = int(os.environ.get("EXAMPLE_PORT", "0"))
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, create_app(tokensmith=ts), threaded=True)
    print(f"serving on http://127.0.0.1:{server.port}/api/me", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
