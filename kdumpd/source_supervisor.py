"""Keeps the loop's event source open and right: drains it into the controller, recreates
it when events were lost or the socket failed, and follows udevd going away and coming
back (``[events] source = "auto"``). Whenever events may have been missed, the controller
is asked to decide over both subsystems.
"""

from __future__ import annotations

import logging
import selectors
from collections.abc import Callable

from kdumpd.controller import Controller
from kdumpd.events import SUBSYSTEMS
from kdumpd.source import EventsLost, EventSource, resolve_source

log = logging.getLogger("kdumpd")

EXIT_NO_SOURCE = 69  # EX_UNAVAILABLE: no event socket can be opened


class SourceSupervisor:
    """``setting`` is ``[events] source``; ``udev_alive`` asks whether udevd answers (None:
    nothing to watch); ``on_fatal(status)`` stops the daemon when no socket can be opened
    (it finishes a reload in flight first, and Restart= brings it back)."""

    def __init__(self, source: EventSource, controller: Controller,
                 clock: Callable[[], float], *, setting: str, receive_buffer_bytes: int,
                 udev_alive: Callable[[], bool] | None,
                 on_fatal: Callable[[int], None]) -> None:
        self.source = source
        self.setting = setting
        self.receive_buffer_bytes = receive_buffer_bytes
        self._controller = controller
        self._clock = clock
        self._udev_alive = udev_alive
        self._on_fatal = on_fatal
        self._udev_was_alive = source.kind == "udev"
        self._udev_changed_once = False
        self._selector: selectors.BaseSelector | None = None

    @property
    def watches_udev(self) -> bool:
        return self._udev_alive is not None

    def attach(self, selector: selectors.BaseSelector) -> None:
        """Have ``selector`` wake the loop for the source (key data "source")."""
        self._selector = selector
        selector.register(self.source.fileno(), selectors.EVENT_READ, "source")

    def configure(self, setting: str, receive_buffer_bytes: int) -> None:
        """New settings (SIGHUP): reopen and resync only when they changed."""
        if (setting, receive_buffer_bytes) == (self.setting, self.receive_buffer_bytes):
            return
        self.setting, self.receive_buffer_bytes = setting, receive_buffer_bytes
        self.reopen("the event source settings changed")

    def drain(self) -> None:
        """Hand what the socket holds to the controller."""
        try:
            events = self.source.drain()
        except (EventsLost, OSError) as error:
            # Either way events may be gone: start over with a fresh socket and decide
            # as if both subsystems changed.
            if not isinstance(error, EventsLost):
                log.error("event socket failed (%s): recreating it", error)
            self._controller.on_events_lost(self._clock())
            self._swap(self.source.kind)
            return
        # Stamp after the drain: a long drain must not close the quiet window early.
        now = self._clock()
        for event in events:
            self._controller.on_event(event, now)

    def reopen(self, why: str, udev_alive: bool | None = None) -> None:
        """Reopen the source as the settings now say, and resync: events may be missed.

        ``udev_alive``: what the caller just learnt; None asks udevd again.
        """
        ask = self._udev_alive or (lambda: False)
        kind = resolve_source(self.setting, ask if udev_alive is None else (lambda: udev_alive))
        log.warning("%s: listening for %s events now; deciding over both subsystems", why, kind)
        self._swap(kind)
        self._controller.request(self._clock(), SUBSYSTEMS, why, unknown_events=True)

    def watch_udev(self) -> None:
        """Notice udevd going away or coming back: what happened meanwhile was not seen."""
        if self._udev_alive is None or self.setting == "kernel":
            return
        alive = self._udev_alive()
        if alive == self._udev_was_alive:
            self._udev_changed_once = False
            return
        if not self._udev_changed_once:
            # One answer can be wrong (a udevd starting or busy): act on two in a row.
            self._udev_changed_once = True
            return
        self._udev_changed_once = False
        self._udev_was_alive = alive
        if self.setting == "auto":
            self.reopen("udevd answers again" if alive else "udevd stopped answering", alive)
        elif alive:
            log.warning("udevd answers again: deciding over both subsystems for what "
                        "happened while it was away")
            self._controller.request(self._clock(), SUBSYSTEMS, "udevd came back",
                                     unknown_events=True)
        else:
            log.error("udevd stopped answering: no events reach kdumpd until it is back "
                      '([events] source = "udev")')

    def _swap(self, kind: str) -> None:
        """Reopen the event source (of ``kind``) and keep the selector on its socket."""
        if self._selector is not None:
            self._selector.unregister(self.source.fileno())
        try:
            self.source.reopen(kind, self.receive_buffer_bytes)
        except OSError as error:
            log.critical("cannot reopen the event socket (%s): stopping", error)
            self._on_fatal(EXIT_NO_SOURCE)
            return
        if self._selector is not None:
            self._selector.register(self.source.fileno(), selectors.EVENT_READ, "source")
