"""image_reads.py: what the loaded image was last read as, kept for that image only."""

from __future__ import annotations

from collections.abc import Collection

from kdumpd.events import SUBSYSTEMS
from kdumpd.image_reads import ImageReads, kernel_keeps_current
from kdumpd.sysfs import ABSENT, UNREADABLE, Snapshot, Value


def snap(loaded: Value | str, **hotplug: str) -> Snapshot:
    crash_loaded = Value(loaded) if isinstance(loaded, str) else loaded
    return Snapshot(crash_loaded, {s: Value(v) for s, v in hotplug.items()})


class Wall:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def reads(wall: Wall | None = None) -> ImageReads:
    def never(_: Collection[str]) -> Snapshot:
        raise AssertionError("nothing is read here")
    return ImageReads(never, wall or Wall())


def test_the_kernel_keeps_current_only_a_loaded_image_with_1_for_every_subsystem() -> None:
    assert kernel_keeps_current(snap("1", cpu="1", memory="1"))
    assert not kernel_keeps_current(snap("0", cpu="1", memory="1"))
    assert not kernel_keeps_current(snap("1", cpu="1", memory="0"))
    assert kernel_keeps_current(snap("1", memory="1"), ("memory",))


def test_a_subsystem_not_read_is_not_kept_current() -> None:
    assert not kernel_keeps_current(snap("1", cpu="1"))
    assert not kernel_keeps_current(snap("1", cpu="1"), ("cpu", "memory"))


def test_nothing_is_known_before_the_first_read() -> None:
    fresh = reads()
    assert fresh.loaded == "" and fresh.hotplug == {} and fresh.read_at is None
    assert not fresh.kernel_keeps_current()


def test_a_read_is_remembered_with_its_wall_time() -> None:
    wall = Wall()
    image = reads(wall)
    image.remember(snap("1", cpu="1", memory="0"))
    assert image.loaded == "1" and image.hotplug == {"cpu": "1", "memory": "0"}
    assert image.read_at == 1_700_000_000.0
    wall.now += 5
    image.remember(snap("1"))  # kexec_crash_loaded alone: crash_hotplug was not read
    assert image.read_at == 1_700_000_000.0 and image.hotplug == {"cpu": "1", "memory": "0"}


def test_an_unreadable_kexec_crash_loaded_is_remembered_as_unknown() -> None:
    image = reads()
    image.remember(snap("1", cpu="1", memory="1"))
    image.remember(snap(Value("Permission denied", UNREADABLE)))
    assert image.loaded == "" and image.hotplug == {}
    image.remember(snap(Value("", ABSENT)))
    assert image.loaded == ""


def test_a_load_forgets_what_crash_hotplug_read() -> None:
    image = reads()
    image.remember(snap("1", cpu="1", memory="1"))
    assert image.kernel_keeps_current()
    image.forget()
    assert image.loaded == "" and image.hotplug == {}
    assert not image.kernel_keeps_current()
    image.remember(snap(Value("", ABSENT), cpu="1"))  # the same unknown image, read again
    assert image.hotplug == {"cpu": "1"}


def test_a_zero_is_known_only_when_it_read_zero_before_for_the_same_image() -> None:
    image = reads()
    image.remember(snap("1", cpu="0", memory="1"))
    assert image.zero_known(snap("1", cpu="0", memory="1"))
    assert not image.zero_known(snap("1", cpu="1", memory="0"))  # memory read 1 before
    assert not image.zero_known(snap("1", cpu="1", memory="1"))  # no zero to know
    assert not image.zero_known(snap("0", cpu="0"))  # another image


def test_the_kernel_keeps_the_remembered_image_current_only_with_1_for_both() -> None:
    image = reads()
    image.remember(snap("1", cpu="1"))
    assert not image.kernel_keeps_current()
    image.remember(snap("1", memory="1"))
    assert image.kernel_keeps_current()
    assert set(image.hotplug) == set(SUBSYSTEMS)
