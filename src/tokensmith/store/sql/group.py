"""Group commit for SQLite: units of work from many threads share one transaction.

SQLite has one writer at a time and, with ``synchronous=FULL``, pays an fsync per commit.
Without help, every thread of a busy process queues for the database lock inside SQLite's
busy handler (which sleeps 1 ms, then 2, 5, ...) and then pays its own fsync. Here the
threads of one process queue in front of the store instead. The first caller to find no
batch running becomes the leader: it takes everything queued (up to ``MAX_BATCH`` units)
into one ``BEGIN IMMEDIATE`` transaction, runs each unit under its own savepoint so a
failing unit rolls back alone (an interrupt such as Ctrl-C ends the whole batch instead),
and commits them together: one fsync per batch. Once the commit is done, the lead passes
to the first caller that queued meanwhile. A lone caller runs its own unit at once, in its
own thread (LevelDB's writer queue works alike).

The callers of a batch are woken once all its units ran, so they sign their tokens while
the fsync is in flight (the SQLite driver lets go of the GIL there) and not while the
leader, whom everybody waits for, still needs the GIL. A leader that has tokens to sign
too hands the commit to a committer thread, which then leads the batches queued meanwhile
itself for as long as there are any: under load no caller has to be woken to lead. No
caller may let anything out before ``durable`` returned: a failed commit undoes every
unit of the batch.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from queue import Empty, SimpleQueue
from typing import Any, Generic, TypeVar

T = TypeVar("T")

MAX_BATCH = 64


class Ticket(Generic[T]):
    """One queued unit of work. Only the leader that runs it changes it; its caller waits
    on two one-shot latches (a lock released by another thread is the cheapest wake-up).
    The waits have no timeout: every batch ends (SQLite's busy timeout bounds the wait for
    the lock) and ``GroupCommitter._lead`` settles every ticket it took, even on a bug."""

    __slots__ = (
        "_claim",
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
        self._claim: _Claim | None = None

    # -- the caller's side --------------------------------------------------------------------
    def result(self) -> T:
        """The unit's return value, possibly before its batch committed; raises what the
        unit raised (its writes are rolled back) or what aborted its batch."""
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set before the turn was released

    def durable(self) -> None:
        """Returns once the unit's writes are durable; raises if its batch rolled back. A
        leader whose commit the committer thread has not started yet runs it here: the
        caller had nothing to do meanwhile after all, and a thread hand-off costs time."""
        claim = self._claim
        if claim is not None:
            self._claim = None
            claim.run_here()
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
        """The unit raised and its savepoint was rolled back: nothing of it will commit. Its
        caller hears so when the batch ends, not now: what the unit read may have been
        written by the batch's other units, and holds only if their commit does."""
        self._error = error

    def settle(self, error: BaseException | None) -> None:
        """The batch ended: committed (``error`` is ``None``) or rolled back with it. A unit
        that failed on its own is answered with its own error if the batch committed."""
        if not self._open:
            return
        self._open = False
        if self._has_run:
            self._commit_error = error
        else:
            if error is not None:
                self._error = error
            self._commit_error = self._error
            self._turn.release()
        self._settled.release()


def _wait(latch: threading.Lock) -> None:
    latch.acquire()
    latch.release()  # stays open for a later look


class GroupCommitter:
    """The queue of one store's units of work in this process. ``run_batch`` runs a batch's
    units in the leader's thread and returns its commit, which settles every ticket. When
    the leader's caller has work of its own to do before it waits (``background``: the
    facade signs its tokens), the commit runs on the committer thread meanwhile, unless the
    caller comes to wait for it before that thread woke; otherwise in the leader's thread.
    A batch that failed before its commit comes back settled (``None``): the error is known
    and a rollback costs no fsync."""

    def __init__(self, run_batch: Callable[[list[Ticket[Any]]], Callable[[], None] | None]) -> None:
        self._run_batch = run_batch
        self._mutex = threading.Lock()
        self._queue: deque[Ticket[Any]] = deque()
        self._leading = False
        self._committer = _Committer()

    def submit(self, work: Callable[[Any], T], *, background: bool = False) -> Ticket[T]:
        """Queue ``work`` and return once it ran (its result is known) or failed. Should
        this caller lead the batch, ``background`` sends its commit to the committer thread
        (the caller has work to do meanwhile) instead of running it here."""
        ticket = Ticket(work)
        with self._mutex:
            self._queue.append(ticket)
            follow = self._leading
            self._leading = True
        if follow:
            try:
                ticket.wait_turn()
            except BaseException:  # interrupted while queued (Ctrl-C in the main thread)
                self._withdraw(ticket)
                raise
            if not ticket.promoted:
                return ticket
        self._lead(ticket, background)
        return ticket

    def _withdraw(self, ticket: Ticket[Any]) -> None:
        """Its caller gave up before its turn: the unit must not run for nobody (it would
        consume a refresh token whose child nobody receives), and a lead already handed to
        it passes on. A ticket already taken into a batch runs and settles as usual."""
        with self._mutex:
            if ticket not in self._queue:
                return
            self._queue.remove(ticket)
            promoted = ticket.promoted
        if promoted:
            self._hand_over()

    def _lead(self, ticket: Ticket[Any], background: bool) -> None:
        batch = self._take()
        try:
            end = self._run_batch(batch)
        except BaseException as exc:  # a bug in run_batch: answer everybody all the same
            self._settle(batch, exc)
            raise
        if end is None:
            self._hand_over()
        elif background:
            # Whoever comes first commits: the committer thread, while the caller signs, or
            # the caller itself, should it wait in ``durable`` before the thread woke.
            claim = _Claim(partial(self._end_here, batch, end))
            ticket._claim = claim
            self._committer.run(partial(self._lead_on_claimed, claim, batch, end))
        else:
            # Nothing for this thread to do meanwhile: a hand-over would only cost time.
            self._end_here(batch, end)

    def _end_here(self, batch: list[Ticket[Any]], end: Callable[[], None]) -> None:
        """End the batch in this thread, then pass the lead on."""
        try:
            end()
        except BaseException as exc:  # a bug in end: answer everybody all the same
            self._settle(batch, exc)
            if not isinstance(exc, Exception):
                raise  # an interrupt goes on once the batch is answered
        else:
            self._hand_over()

    def _lead_on_claimed(
        self, claim: _Claim, batch: list[Ticket[Any]], end: Callable[[], None]
    ) -> None:
        if claim.take():
            self._lead_on(batch, end)

    def _lead_on(self, batch: list[Ticket[Any]], end: Callable[[], None] | None) -> None:
        """On the committer thread: end the batch, then lead every batch queued meanwhile
        while there is one, so that no caller has to be woken to lead it."""
        while True:
            try:
                if end is not None:
                    end()
                batch = self._take()
                if not batch:
                    return
                end = self._run_batch(batch)
            except BaseException as exc:  # a bug: answer everybody all the same
                self._settle(batch, exc)
                return

    def _take(self) -> list[Ticket[Any]]:
        """The next batch; none, and the lead given up, when nobody is queued."""
        with self._mutex:
            if not self._queue:
                self._leading = False
            return [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]

    def _settle(self, batch: list[Ticket[Any]], error: BaseException) -> None:
        try:
            for ticket in batch:
                ticket.settle(error)
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """The batch ended: the first caller that queued meanwhile leads the next one (only
        now: it needs the connection the commit was using)."""
        with self._mutex:
            if self._queue:
                self._queue[0].promote()
            else:
                self._leading = False


class _Claim:
    """A batch's commit, run once: by the committer thread, or by the leader's caller in
    ``Ticket.durable`` if it gets there first."""

    __slots__ = ("_here", "_lock", "_open")

    def __init__(self, here: Callable[[], None]) -> None:
        self._here = here
        self._lock = threading.Lock()
        self._open = True

    def take(self) -> bool:
        with self._lock:
            taken, self._open = self._open, False
        return taken

    def run_here(self) -> None:
        if self.take():
            self._here()


class _Committer:
    """A thread that runs the batches' ends one after the other. Started on demand, it exits
    after ``IDLE_SECONDS`` with nothing to do, so an idle store keeps no thread. It is a
    daemon: a caller waiting in ``durable`` keeps the interpreter alive until its commit
    ended, and a commit nobody waits for is atomic in SQLite all the same."""

    IDLE_SECONDS = 1.0

    def __init__(self) -> None:
        self._jobs: SimpleQueue[Callable[[], None]] = SimpleQueue()
        self._mutex = threading.Lock()
        self._running = False

    def run(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)
        with self._mutex:
            if self._running:
                return
            self._running = True
        try:
            threading.Thread(target=self._loop, name="tokensmith-commit", daemon=True).start()
        except BaseException as exc:
            # No new thread (the interpreter is exiting, no memory) or interrupted while
            # starting one: end the batch here, so that nobody waits for a thread that may
            # not exist. Only one batch is ever in flight: this one.
            with self._mutex:
                self._running = False
            try:
                job = self._jobs.get_nowait()
            except Empty:
                pass  # the thread did start, and took it
            else:
                job()
            if not isinstance(exc, Exception):
                raise

    def _loop(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.IDLE_SECONDS)
            except Empty:
                with self._mutex:
                    # A job queued before this look is ours; one queued after it starts a
                    # new thread.
                    if self._jobs.empty():
                        self._running = False
                        return
                continue
            job()
