"""A back-channel logout receiver for the tests: ``python -m tests.logout_receiver PORT
RECORD DELAY`` serves POST /backchannel on 127.0.0.1:PORT, answers 200 after DELAY seconds,
and appends one JSON line per delivery to RECORD: the logout token, and whether another
delivery of the same ``jti`` was in progress at that moment (an overlap: two instances
delivering one message at once). Importable for in-process use as :func:`serve`."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def serve(port: int, record: Path, delay: float) -> ThreadingHTTPServer:
    in_flight: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
            [token] = parse_qs(body)["logout_token"]
            jti = _jti(token)
            with lock:
                overlap = jti in in_flight
                in_flight.add(jti)
            time.sleep(delay)
            with lock:
                in_flight.discard(jti)
                with record.open("a") as out:
                    line = {
                        "token": token,
                        "overlap": overlap,
                        "type": self.headers["content-type"],
                    }
                    out.write(json.dumps(line) + "\n")
            self.send_response(200)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def received(record: Path) -> list[dict[str, object]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


if __name__ == "__main__":
    server = serve(int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
    print("ready", flush=True)
    server.serve_forever()
