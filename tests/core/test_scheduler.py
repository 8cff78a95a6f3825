from __future__ import annotations

import pytest

from kdumpd.events import Event
from kdumpd.fakes.clock import MockTime
from kdumpd.scheduler import ReloadScheduler

MEM = Event("memory", "online", "/devices/system/memory/memory1")
CPU = Event("cpu", "offline", "/devices/system/cpu/cpu1")


def test_nothing_pending_has_no_deadline() -> None:
    s = ReloadScheduler(0.25, 3.0)
    assert s.deadline() is None
    assert s.take(10**9) is None


def test_burst_is_due_after_the_quiet_window(clock: MockTime) -> None:
    s = ReloadScheduler(0.25, 3.0)
    s.add(MEM, clock())
    clock.advance(0.1)
    s.add(CPU, clock())
    assert s.deadline() == clock() + 0.25
    clock.advance(0.2499)
    assert s.take(clock()) is None
    clock.advance(0.0001)
    burst = s.take(clock())
    assert burst is not None
    assert burst.events == 2
    assert burst.subsystems == {"memory", "cpu"}
    assert (burst.first, burst.last) == (MEM, CPU)
    assert s.deadline() is None


def test_a_never_ending_stream_is_cut_at_max_delay(clock: MockTime) -> None:
    s = ReloadScheduler(0.25, 3.0)
    start = clock()
    taken = []
    for _ in range(160):  # 16 events/s for 10 s (exact in binary): never quiet for 0.25 s
        if (burst := s.take(clock())) is not None:
            taken.append((clock() - start, burst.events))
        s.add(MEM, clock())
        clock.advance(0.0625)
    assert [t for t, _ in taken] == [3.0, 6.0, 9.0]
    assert [n for _, n in taken] == [48, 48, 48]


def test_nothing_is_due_while_a_reload_runs_then_exactly_one_follow_up(clock: MockTime) -> None:
    s = ReloadScheduler(0.25, 3.0)
    s.add(MEM, clock())
    clock.advance(0.25)
    assert s.take(clock()) is not None
    s.reload_started()
    for _ in range(100):
        s.add(MEM, clock())
        clock.advance(0.01)
    clock.advance(10)
    assert s.deadline() is None
    assert s.take(clock()) is None
    s.reload_finished(clock())
    follow_up = s.take(clock())
    assert follow_up is not None
    assert follow_up.events == 100
    assert s.take(clock()) is None


def test_a_request_schedules_its_subsystems_without_counting_events(clock: MockTime) -> None:
    s = ReloadScheduler(0.25, 3.0)
    s.request(clock(), frozenset({"cpu", "memory"}), "events were lost")
    s.request(clock(), (), "events were lost")
    assert s.take(clock() + 0.24) is None
    clock.advance(0.25)
    burst = s.take(clock())
    assert burst is not None
    assert burst.reasons == ("events were lost",)
    assert burst.missed == "" and burst.actions == frozenset() and not burst.follow_up
    assert burst.events == 0 and burst.first is None
    assert burst.subsystems == {"cpu", "memory"}


def test_a_request_due_now_is_due_at_once(clock: MockTime) -> None:
    s = ReloadScheduler(0.25, 3.0)
    s.add(Event("cpu", "online", "/x"), clock())
    s.request(clock(), (), "kdumpd reload", due_now=True)
    burst = s.take(clock())
    assert burst is not None and burst.events == 1 and burst.reasons == ("kdumpd reload",)


def test_a_deferred_burst_comes_back_merged_and_not_before_its_time(clock: MockTime) -> None:
    s = ReloadScheduler(0.25, 3.0)
    s.add(Event("memory", "online", "/m0"), clock())
    clock.advance(0.25)
    burst = s.take(clock())
    assert burst is not None and not burst.zero_seen
    s.defer(burst, clock() + 0.1)
    s.add(Event("cpu", "online", "/c1"), clock())
    assert s.deadline() == pytest.approx(clock() + 0.25)  # the new event's quiet window
    clock.advance(0.25)
    again = s.take(clock())
    assert again is not None
    assert again.zero_seen and again.events == 2
    assert again.subsystems == {"cpu", "memory"}
    assert again.started_at == burst.started_at
    s.defer(again, clock() + 5.0)
    assert s.deadline() == pytest.approx(clock() + 5.0)


def test_a_deferred_burst_keeps_its_first_and_last_event_and_why_it_was_missed(
    clock: MockTime,
) -> None:
    s = ReloadScheduler(0.25, 3.0)
    s.add(MEM, clock())
    s.request(clock(), ["memory"], "events arrived during our load", missed=True)
    clock.advance(0.25)
    alone = s.take(clock())
    assert alone is not None and alone.missed == "events arrived during our load"

    s.defer(alone, clock())  # nothing arrived meanwhile: it comes back as it was
    back = s.take(clock() + 0.25)
    assert back is not None
    assert (back.first, back.last, back.events) == (MEM, MEM, 1)
    assert back.missed == "events arrived during our load"

    s.add(CPU, clock())  # an event arrives before the burst is put back
    s.defer(back, clock())
    clock.advance(0.25)
    merged = s.take(clock())
    assert merged is not None
    assert merged.events == 2
    assert (merged.first, merged.last) == (MEM, CPU)  # oldest first, newest last
    assert merged.missed == "events arrived during our load"
    assert merged.started_at == back.started_at


def test_a_fresh_scheduler_holds_no_floor_of_its_own() -> None:
    """On a clock that starts at 0, nothing but the quiet window delays the first burst."""
    s = ReloadScheduler(0.25, 3.0)
    s.add(MEM, 0.0)
    assert s.deadline() == 0.25
    burst = s.take(0.25)
    assert burst is not None and burst.missed == "" and not burst.zero_seen

    # Put back with no floor and nothing pending: due a quiet window after its own start.
    late = ReloadScheduler(0.25, 3.0)
    late.add(MEM, 0.5)
    taken = late.take(0.75)
    assert taken is not None
    late.defer(taken, 0.0)
    assert late.deadline() == 0.75


def test_events_during_a_load_or_its_grace_form_a_follow_up_with_the_longer_quiet(
    clock: MockTime,
) -> None:
    s = ReloadScheduler(0.05, 3.0, grace_s=0.5, follow_up_quiet_s=0.25,
                        follow_up_max_delay_s=30.0)
    s.add(MEM, clock())
    assert s.deadline() == pytest.approx(clock() + 0.05)  # the short leading window
    clock.advance(0.05)
    lead = s.take(clock())
    assert lead is not None and not lead.follow_up
    s.reload_started()
    s.add(CPU, clock())  # during the load
    s.reload_finished(clock())
    assert s.deadline() == pytest.approx(clock() + 0.25)
    clock.advance(0.25)
    follow = s.take(clock())
    assert follow is not None and follow.follow_up and follow.events == 1

    # The last instant of the grace period counts; the next one does not.
    s.reload_started()
    s.reload_finished(clock())
    clock.advance(0.5)
    s.add(MEM, clock())
    assert s.take(clock() + 0.25) is not None
    s.reload_started()
    s.reload_finished(clock())
    clock.advance(0.5001)
    s.add(MEM, clock())
    late = s.take(clock() + 0.05)
    assert late is not None and not late.follow_up


def test_a_paced_stream_after_a_load_is_one_follow_up_at_its_end(clock: MockTime) -> None:
    # 20 events/s for 10 s: the leading reload, then one follow-up once the stream is quiet
    # (a reload in the middle would open a window to shorten a staleness the next event
    # brings back).
    s = ReloadScheduler(0.05, 3.0)
    taken = []
    start = clock()
    for _ in range(200):
        if (burst := s.take(clock())) is not None:
            taken.append((clock() - start, burst.events, burst.follow_up))
            s.reload_started()
        if s.running and clock() - start >= 0.5:  # the leading load took 0.45 s
            s.reload_finished(clock())
        s.add(MEM, clock())
        clock.advance(0.0625)
    clock.advance(1.0)
    burst = s.take(clock())
    assert burst is not None
    taken.append((clock() - start, burst.events, burst.follow_up))
    assert [t[2] for t in taken] == [False, True]
    assert taken[0][1] == 1 and taken[0][0] == 0.0625
    assert sum(n for _, n, _ in taken) == 200


def test_a_follow_up_stream_is_cut_at_the_follow_up_max_delay(clock: MockTime) -> None:
    s = ReloadScheduler(0.05, 3.0, follow_up_max_delay_s=30.0)
    s.reload_started()
    first = clock()
    while clock() - first < 31:
        s.add(MEM, clock())
        if s.running and clock() - first > 1:
            s.reload_finished(clock())
        if s.take(clock()) is not None:
            break
        clock.advance(0.0625)
    assert clock() - first == pytest.approx(30.0)


def test_bursts_carry_their_actions_and_requests_for_unknown_events_any(
    clock: MockTime,
) -> None:
    s = ReloadScheduler(0.25, 3.0)
    s.add(Event("memory", "remove", "/m1"), clock())
    s.add(CPU, clock())
    s.request(clock(), ["memory", "cpu"], "events were lost", unknown_events=True)
    s.request(clock(), ["cpu"], "kdumpd reload")
    burst = s.take(clock() + 0.25)
    assert burst is not None
    assert burst.actions == {("memory", "remove"), ("cpu", "offline"), ("memory", "*"),
                             ("cpu", "*")}
    s.defer(burst, clock())
    again = s.take(clock() + 0.25)
    assert again is not None and again.actions == burst.actions


def test_a_deferred_follow_up_stays_a_follow_up(clock: MockTime) -> None:
    s = ReloadScheduler(0.05, 3.0, follow_up_quiet_s=0.25)
    s.reload_started()
    s.add(MEM, clock())
    s.reload_finished(clock())
    burst = s.take(clock() + 0.25)
    assert burst is not None and burst.follow_up
    clock.advance(5.0)  # long after the grace period
    s.defer(burst, clock())
    again = s.take(clock() + 0.25)
    assert again is not None and again.follow_up
