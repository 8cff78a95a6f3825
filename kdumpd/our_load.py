"""A load of kdumpd's, from its start to the state it leaves: when it started, the
hardware the new image describes, and what its outcome writes into the state (the last
load, the debt, the fingerprint, the exposure it caused or ended)."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from kdumpd.exposure import ExposureClock
from kdumpd.hardware import Hardware
from kdumpd.policy import is_unloaded
from kdumpd.reloader import Outcome
from kdumpd.state import LastLoad, State


class OurLoad:
    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self.started_wall = 0.0  # unix seconds the last load started
        self._describes: Hardware | None = None  # what the image being loaded describes
        self._exposure = ExposureClock()

    def starting(self, state: State, hardware: Hardware, stale_from: float) -> State:
        """A load starts for ``hardware``; the host's image has been stale since
        ``stale_from`` (monotonic). The state to save first: if kdumpd dies during the
        load, it may owe a crash kernel."""
        self._exposure.stale_from(stale_from)
        self._describes = hardware
        self.started_wall = self._wall()
        return replace(state, loading=True)

    def ended(self, state: State, outcome: Outcome, how: str, now: float) -> State:
        """The state after the load's ``outcome`` at ``now``; ``how``: the command."""
        missing = is_unloaded(outcome.crash_loaded)
        state = replace(state, owed=missing, loading=False, last_load=LastLoad(
            at=self.started_wall, how=how, ok=outcome.ok,
            duration_s=round(outcome.duration_s, 3)))
        state = replace(state, exposure=self._exposure.reload_ended(
            state.exposure, ok=outcome.ok, unloaded=missing, duration_s=outcome.duration_s,
            now=now))
        if outcome.ok and self._describes is not None:
            state = state.with_hardware(self._describes.fingerprint,
                                        self._describes.summary())
        return state

    def moved(self, hardware: Hardware) -> frozenset[str]:
        """The subsystems that changed between the load's start and ``hardware``."""
        if self._describes is None:
            return frozenset()
        return self._describes.changed_subsystems(hardware)
