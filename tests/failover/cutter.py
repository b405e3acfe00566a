"""A TCP proxy in front of PostgreSQL that cuts one connection at a chosen point of a unit
of work (issue #16 Deliver 4): the network failing, not a fake of our store.

It reads the client's side of the wire protocol (PostgreSQL docs, "Message Formats"): the
untyped start-up packets, then typed messages. psycopg starts a transaction with a simple
``BEGIN`` query, runs each statement as an extended query ending in ``Sync``, and commits
with a simple ``COMMIT``. Armed with a :class:`Cut`, the proxy acts on the first connection
that begins a transaction:

- ``Cut("begin")``: drops the connection instead of sending ``BEGIN``;
- ``Cut("statement", n)``: drops it before the ``n``-th statement of the transaction, so
  statements ``1 .. n-1`` ran (the rotation's third statement follows its ``UPDATE``);
- ``Cut("commit")``: drops it instead of sending ``COMMIT`` (the server rolls back);
- ``Cut("commit", deliver=True)``: sends ``COMMIT``, then drops the connection without
  passing the server's answer on: committed, and the client cannot know.

``transaction=n`` acts on the ``n``-th transaction begun after arming instead (a key
rotation reads the records before its locking transaction). With ``hold=True`` the proxy
stops at the point, its locks still held by the server, sets ``reached`` and cuts only once
:meth:`Cutter.release` is called: another process can be lined up behind those locks.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass

_UNTYPED_REQUESTS = {80877103, 80877104}  # SSLRequest, GSSENCRequest: a start-up follows


@dataclass(frozen=True)
class Cut:
    point: str
    statement: int = 0
    deliver: bool = False
    transaction: int = 1
    hold: bool = False


class Cutter:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._armed: Cut | None = None
        self.fired = threading.Event()
        self.reached = threading.Event()  # a held cut stopped at its point
        self._released = threading.Event()
        self._begun = 0  # transactions begun since arming
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, cut: Cut) -> None:
        with self._lock:
            self._armed = cut
            self._begun = 0
            self.fired.clear()
            self.reached.clear()
            self._released.clear()

    def release(self) -> None:
        """Let a held cut go on and cut."""
        self._released.set()

    def close(self) -> None:
        """Stop listening and drop every connection: the server is gone."""
        self._closed = True
        _close(self._listener)  # shutdown wakes the accept() a plain close would not
        with self._lock:
            for sock in self._sockets:
                _close(sock)

    def _take(self) -> Cut | None:
        """The armed cut, if the transaction beginning now is the one it is for."""
        with self._lock:
            cut = self._armed
            if cut is None:
                return None
            self._begun += 1
            if self._begun < cut.transaction:
                return None
            self._armed = None
            return cut

    def _hold(self, cut: Cut) -> None:
        if cut.hold:
            self.reached.set()
            self._released.wait(60)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._downstream, args=(server, client), daemon=True).start()
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        """Server to client, untouched; the upstream side closes both sockets to cut."""
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        buffer = b""
        started = False
        cut: Cut | None = None
        statements = 0
        try:
            while data := client.recv(65536):
                buffer += data
                while True:
                    message, buffer = _next_message(buffer, started)
                    if message is None:
                        break
                    kind = message[:1] if started else b""
                    if not started and _request_code(message) not in _UNTYPED_REQUESTS:
                        started = True  # that was the start-up message
                    elif kind == b"Q" and message[5:].upper().startswith(b"BEGIN"):
                        cut, statements = self._take(), 0
                        if cut is not None and cut.point == "begin":
                            self._hold(cut)
                            return self._cut(client, server)
                    elif cut is not None and kind in (b"P", b"B") and cut.point == "statement":
                        if statements + 1 == cut.statement:
                            self._hold(cut)
                            return self._cut(client, server)
                    elif kind == b"S":
                        statements += 1
                    elif (
                        cut is not None
                        and cut.point == "commit"
                        and kind == b"Q"
                        and b"COMMIT" in message[5:].upper()
                    ):
                        self._hold(cut)
                        if cut.deliver:
                            self.fired.set()
                            _close(client)  # so the server's answer goes nowhere
                            server.sendall(message)
                            time.sleep(0.3)  # the server reads and commits it first
                        return self._cut(client, server)
                    server.sendall(message)
        except OSError:
            pass
        finally:
            _close(server)
            _close(client)

    def _cut(self, client: socket.socket, server: socket.socket) -> None:
        self.fired.set()  # before the client can notice
        # Client first: its answer must never reach it, whatever the server does next.
        _close(client)
        _close(server)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _request_code(message: bytes) -> int:
    return int(struct.unpack("!I", message[4:8])[0])


def _next_message(buffer: bytes, typed: bool) -> tuple[bytes | None, bytes]:
    """The first whole message in ``buffer`` and the rest (``None`` until one is whole)."""
    head = 1 if typed else 0
    if len(buffer) < head + 4:
        return None, buffer
    length = struct.unpack("!I", buffer[head : head + 4])[0]
    end = head + length
    if len(buffer) < end:
        return None, buffer
    return buffer[:end], buffer[end:]
