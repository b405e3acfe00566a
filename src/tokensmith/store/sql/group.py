"""Group commit for SQLite: units of work from many threads share one transaction.

SQLite has one writer at a time and, with ``synchronous=FULL``, pays an fsync per commit.
Without help, every thread of a busy process queues for the database lock inside SQLite's
busy handler (which sleeps 1 ms, then 2, 5, ...) and then pays its own fsync. Here the
threads of one process queue in front of the store instead. The first caller to find no
batch running becomes the leader: it takes everything queued (up to ``MAX_BATCH`` units)
into one ``BEGIN IMMEDIATE`` transaction, runs each unit under its own savepoint so a
failing unit rolls back alone, and commits them together: one fsync per batch. Then it
hands the lead to the first caller that queued meanwhile. A lone caller runs its own unit
at once, in its own thread, with no hand-over at all (LevelDB's writer queue works alike).

Each waiting caller is woken as soon as its unit ran, before the batch commits, so it can
sign its tokens during the commit; it must not let anything out before ``committed``
returned: a failed commit undoes every unit of the batch.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

MAX_BATCH = 64


class Ticket(Generic[T]):
    """One queued unit of work. Only the leader that runs it changes it; its caller waits
    on two one-shot latches (a lock released by another thread is the cheapest wake-up).
    The waits have no timeout: every batch ends (SQLite's busy timeout bounds the wait for
    the lock) and ``GroupCommitter._lead`` settles every ticket it took, even on a bug."""

    __slots__ = (
        "_commit_error",
        "_error",
        "_has_run",
        "_open",
        "_settled",
        "_turn",
        "_value",
        "promoted",
        "work",
    )

    def __init__(self, work: Callable[[Any], T]) -> None:
        self.work = work
        self._turn = threading.Lock()  # released when the unit ran, or to hand over the lead
        self._turn.acquire()
        self._settled = threading.Lock()  # released when its batch committed or rolled back
        self._settled.acquire()
        self.promoted = False
        self._has_run = False
        self._open = True
        self._value: T | None = None
        self._error: BaseException | None = None
        self._commit_error: BaseException | None = None

    # -- the caller's side --------------------------------------------------------------------
    def result(self) -> T:
        """The unit's return value, possibly before its batch committed; raises what the
        unit raised (its writes are rolled back) or what aborted its batch."""
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set before the turn was released

    def committed(self) -> None:
        """Returns once the unit's writes are durable; raises if its batch rolled back."""
        _wait(self._settled)
        if self._commit_error is not None:
            raise self._commit_error

    def wait_turn(self) -> None:
        self._turn.acquire()  # a promoted ticket's turn is released once more when it runs

    # -- the leader's side --------------------------------------------------------------------
    def promote(self) -> None:
        self.promoted = True
        self._turn.release()

    def ran(self, value: T) -> None:
        self._value = value
        self._has_run = True
        self._turn.release()

    def failed(self, error: BaseException) -> None:
        """The unit raised and its savepoint was rolled back: nothing of it will commit."""
        self._error = self._commit_error = error
        self._open = False
        self._turn.release()
        self._settled.release()

    def settle(self, error: BaseException | None) -> None:
        """The batch ended: committed (``error`` is ``None``) or rolled back with it."""
        if not self._open:
            return  # failed on its own already
        self._open = False
        if not self._has_run:
            self._error = error
            self._turn.release()
        self._commit_error = error
        self._settled.release()


def _wait(latch: threading.Lock) -> None:
    latch.acquire()
    latch.release()  # stays open for a later look


class GroupCommitter:
    """The queue of one store's units of work in this process, run in batches by
    ``run_batch`` (which must settle every ticket it is given)."""

    def __init__(self, run_batch: Callable[[list[Ticket[Any]]], None]) -> None:
        self._run_batch = run_batch
        self._mutex = threading.Lock()
        self._queue: deque[Ticket[Any]] = deque()
        self._leading = False

    def submit(self, work: Callable[[Any], T]) -> Ticket[T]:
        """Queue ``work`` and return once it ran (its result is known) or failed."""
        ticket = Ticket(work)
        with self._mutex:
            self._queue.append(ticket)
            follow = self._leading
            self._leading = True
        if follow:
            ticket.wait_turn()
            if not ticket.promoted:
                return ticket
        self._lead()
        return ticket

    def _lead(self) -> None:
        with self._mutex:
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
        try:
            self._run_batch(batch)
        except BaseException as exc:  # a bug in run_batch: answer everybody all the same
            for ticket in batch:
                ticket.settle(exc)
            raise
        finally:
            with self._mutex:
                if self._queue:
                    self._queue[0].promote()
                else:
                    self._leading = False
