"""The two behaviours kdumpd replaces, as real udev rules run by the real systemd-udevd.

Written from their documented logic (shared/docs/kernel-and-peers.md):

- Debian/Ubuntu kdump-tools (50-kdump-tools.rules): memory online/offline and cpu
  add/remove/online each RUN one synchronous ``kdump-config try-reload`` under a blocking
  ``flock``; no crash_hotplug check.
- Fedora/RHEL kdump-utils (98-kexec.rules): skip when crash_hotplug is 1; for cpu
  add/remove and memory online/offline start the throttler detached (``systemd-run
  --no-block``); the throttler takes ``flock -n`` (others exit), sleeps 1 s, waits for
  ``udevadm settle --timeout 3``, releases the lock, then ``kdumpctl reload``, which
  serialises on its own lock.

Adaptations, all stated in RESULTS.md: the reload is a script that logs an unload and a
load like kdumpd's fake backend (500 ms each); ``ATTRS{crash_hotplug}=="1"`` becomes a
``PROGRAM`` reading the scenario's fake sysfs file (this kernel has no crash_hotplug);
Fedora's ``systemctl is-active kdump.service`` guard is left out; and where systemd is not
PID 1 ``systemd-run --no-block`` becomes ``setsid -f`` with stdio on /dev/null (detached
from udevd's worker in its own session, returning at once like ``--no-block``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RULES_DIR = Path("/run/udev/rules.d")
PATH_LINE = "PATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH"

RELOAD_SH = f"""#!/bin/sh
# Stand-in for `kexec -p -u` (0.1 s, measured 70-120 ms in the guest) then `kexec -p ...`
# (0.5 s), logged like kdumpd's fake backend.
{PATH_LINE}
log=@DIR@/fake.log
t=$(date +%s.%N); sleep 0.1; echo "{{\\"op\\": \\"unload\\", \\"t\\": $t, \\"ok\\": true}}" >>"$log"
t=$(date +%s.%N); sleep 0.5; echo "{{\\"op\\": \\"load\\", \\"t\\": $t, \\"ok\\": true}}" >>"$log"
"""

DEBIAN_SH = f"""#!/bin/sh
# kdump-config try-reload: wait for the lock (blocking flock), then reload, per event.
{PATH_LINE}
d=@DIR@
touch "$d/active/$$"
exec 9>"$d/kdump.lock"
flock 9
[ -e "$d/abort" ] || "$d/reload.sh"
rm -f "$d/active/$$"
"""

DEBIAN_RULES = """# kdumpd benchmark: Debian/Ubuntu kdump-tools 50-kdump-tools.rules behaviour
SUBSYSTEM=="memory", ACTION=="online", RUN+="@DIR@/try-reload.sh"
SUBSYSTEM=="memory", ACTION=="offline", RUN+="@DIR@/try-reload.sh"
SUBSYSTEM=="cpu", ACTION=="add", RUN+="@DIR@/try-reload.sh"
SUBSYSTEM=="cpu", ACTION=="remove", RUN+="@DIR@/try-reload.sh"
SUBSYSTEM=="cpu", ACTION=="online", RUN+="@DIR@/try-reload.sh"
"""

FEDORA_DETACH_SH = f"""#!/bin/sh
# Stand-in for `systemd-run --quiet --no-block kdump-udev-throttler` (systemd is not PID 1):
# a new session, stdio off udevd's pipes, and return at once.
{PATH_LINE}
exec setsid -f @DIR@/throttler.sh </dev/null >/dev/null 2>&1
"""

FEDORA_THROTTLER_SH = f"""#!/bin/sh
# kdump-udev-throttler: the first caller takes the lock, waits for udev to settle, reloads.
{PATH_LINE}
d=@DIR@
exec 9>"$d/throttle.lock"
flock -n 9 || exit 0
touch "$d/active/$$"
sleep 1 && udevadm settle --timeout 3
exec 9>&-
flock "$d/kdumpctl.lock" "$d/reload.sh"
rm -f "$d/active/$$"
"""

FEDORA_RULES = """# kdumpd benchmark: Fedora/RHEL kdump-utils 98-kexec.rules behaviour
SUBSYSTEM=="cpu", PROGRAM="/bin/cat @ROOT@/sys/devices/system/cpu/crash_hotplug", \
RESULT=="1", GOTO="kdump_reload_end"
SUBSYSTEM=="memory", PROGRAM="/bin/cat @ROOT@/sys/devices/system/memory/crash_hotplug", \
RESULT=="1", GOTO="kdump_reload_end"
SUBSYSTEM=="cpu", ACTION=="add", GOTO="kdump_reload"
SUBSYSTEM=="cpu", ACTION=="remove", GOTO="kdump_reload"
SUBSYSTEM=="memory", ACTION=="online", GOTO="kdump_reload"
SUBSYSTEM=="memory", ACTION=="offline", GOTO="kdump_reload"
GOTO="kdump_reload_end"
LABEL="kdump_reload"
RUN+="@DIR@/detach.sh"
LABEL="kdump_reload_end"
"""


@dataclass(frozen=True)
class Peer:
    name: str
    rules_name: str  # file name under RULES_DIR; unique to the benchmark
    rules: str
    scripts: tuple[tuple[str, str], ...]  # (file name, text)


DEBIAN = Peer(
    "Debian/Ubuntu", "50-zz-kdumpd-bench-debian.rules", DEBIAN_RULES,
    (("reload.sh", RELOAD_SH), ("try-reload.sh", DEBIAN_SH)),
)
FEDORA = Peer(
    "Fedora/RHEL", "98-zz-kdumpd-bench-fedora.rules", FEDORA_RULES,
    (("reload.sh", RELOAD_SH), ("detach.sh", FEDORA_DETACH_SH),
     ("throttler.sh", FEDORA_THROTTLER_SH)),
)
PEERS = (FEDORA, DEBIAN)


def render(text: str, workdir: Path, root: Path) -> str:
    return text.replace("@DIR@", str(workdir)).replace("@ROOT@", str(root))


def udevadm(*args: str, timeout: float = 30) -> int:
    done = subprocess.run(["udevadm", *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=timeout + 5, check=False)
    return done.returncode


def reload_rules() -> None:
    udevadm("control", "--reload")
    udevadm("control", "--ping", "--timeout=5")  # the reload request has been handled


@contextlib.contextmanager
def installed(peer: Peer, workdir: Path, root: Path) -> Iterator[Path]:
    """Write the peer's scripts to ``workdir`` and its rules file; removed on the way out.

    Yields the rules file's path.
    """
    (workdir / "active").mkdir(parents=True, exist_ok=True)
    for name, text in peer.scripts:
        path = workdir / name
        path.write_text(render(text, workdir, root), encoding="ascii")
        path.chmod(0o755)
    created_dir = not RULES_DIR.exists()
    RULES_DIR.mkdir(parents=True, exist_ok=True)
    rules = RULES_DIR / peer.rules_name
    try:
        rules.write_text(render(peer.rules, workdir, root), encoding="ascii")
        reload_rules()
        yield rules
    finally:
        rules.unlink(missing_ok=True)
        reload_rules()
        if created_dir:
            with contextlib.suppress(OSError):
                RULES_DIR.rmdir()


def remove_leftovers() -> list[Path]:
    """Rules files a killed earlier run left behind (the benchmark's names only)."""
    removed = [p for p in RULES_DIR.glob("*-kdumpd-bench-*.rules")] if RULES_DIR.exists() else []
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        reload_rules()
    return removed


def active(workdir: Path) -> int:
    """Peer scripts still at work (holding or waiting for a lock, or reloading)."""
    try:
        return len(os.listdir(workdir / "active"))
    except FileNotFoundError:
        return 0
