"""`kdumpd reload` requests the daemon holds until their decision is made: accepted from
the control socket (control.py), decided like any burst, answered with the decision and,
when it reloaded, the outcome. A request during a reload is answered by that reload: a
second load right after it would add a window without a crash kernel, not news.
"""

from __future__ import annotations

import logging
import selectors
import socket
from collections.abc import Callable

from kdumpd.control_socket import CHECK_S, Answer, ControlError, ControlServer, reply
from kdumpd.controller import Controller
from kdumpd.events import SUBSYSTEMS
from kdumpd.reloader import Outcome

log = logging.getLogger("kdumpd")


class ReloadRequests:
    """``server`` None: no requests (tests, dry run)."""

    def __init__(self, server: ControlServer | None, controller: Controller,
                 clock: Callable[[], float]) -> None:
        self._server = server
        self._controller = controller
        self._clock = clock
        self._waiting: list[socket.socket] = []
        self._outcome: Outcome | None = None

    def open(self, selector: selectors.BaseSelector) -> None:
        """Listen (key data "control"); a socket that cannot be opened is said once."""
        if self._server is None:
            return
        try:
            self._server.open(selector)  # its connections too: each read as bytes arrive
        except ControlError as error:
            log.warning("%s: `kdumpd reload` cannot reach this daemon", error)
            self._server = None

    def accept(self, *, reloading: bool) -> None:
        """Take what the control socket or one of its connections has (never blocking);
        ``reloading``: a reload runs and will answer the requests."""
        if self._server is None:
            return
        for conn, pid in self._server.poll(self._clock()):
            self._waiting.append(conn)
            if reloading:
                log.info("kdumpd reload (pid %d) during a reload: answered by its outcome",
                         pid)
                continue
            log.info("asked to decide now (kdumpd reload, pid %d)", pid)
            self._outcome = None
            self._controller.request(self._clock(), SUBSYSTEMS, "kdumpd reload",
                                     due_now=True)

    def check_every(self) -> float | None:
        """For the loop's timer: how often to look for silent connections (None: none)."""
        return CHECK_S if self._server is not None and self._server.connections else None

    def expire(self) -> None:
        """Drop the connections that said nothing by their deadline (the loop's timer)."""
        if self._server is not None:
            self._server.expire(self._clock())

    def finished(self, outcome: Outcome) -> None:
        """A reload finished: its outcome answers the requests waiting for it."""
        self._outcome = outcome

    def answer_if_decided(self, *, reloading: bool) -> None:
        """Answer the waiting requests once nothing is pending or running any more."""
        scheduler = self._controller.scheduler
        if not self._waiting or scheduler.pending or scheduler.running or reloading:
            return
        decision = self._controller.last_decision
        outcome = self._outcome
        if decision is None:
            answer = Answer(False, "no decision was made", ok=False)
        elif not decision.reload:
            answer = Answer(False, decision.reason)
        elif self._controller.dry_run or outcome is None:
            answer = Answer(True, decision.reason, detail="dry run: nothing was reloaded")
        elif outcome.ok:
            answer = Answer(True, decision.reason, detail=f"reloaded in {outcome.duration_s:.2f} s")
        else:
            answer = Answer(True, decision.reason, ok=False,
                            detail=f"reload failed: {outcome.error}")
        self.close(answer)

    def close(self, answer: Answer | None = None) -> None:
        """Answer whoever still waits (``answer``, or: kdumpd is stopping) and stop
        listening when none is given."""
        for conn in self._waiting:
            reply(conn, answer or Answer(False, "kdumpd is stopping", ok=False))
        self._waiting.clear()
        if answer is None and self._server is not None:
            self._server.close()
