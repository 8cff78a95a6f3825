"""Collect what each scenario measured and write it to tests/vm/RESULTS.md."""

from __future__ import annotations

import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .driver import CrashState

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
# From this line to its end RESULTS.md is written by hand (`make vm-long`'s figures): a
# full vm-test run rewrites what comes before it and keeps it.
HAND_WRITTEN = "<!-- vm-long: written by hand from make vm-long; make vm-test keeps it -->"


@dataclass
class BurstResult:
    """One burst of hotplug events and what kdumpd and the kernel made of it."""

    burst: str
    udev_events: int  # hotplug events udev passed on (udevadm monitor --udev)
    kdumpd_events: int  # sum of KDUMPD_EVENTS over kdumpd's decisions
    decisions: int  # reload-done + skipped + failed messages
    reloads: int
    failed: int
    before: CrashState
    after: CrashState
    reload_ms: list[int] = field(default_factory=list)
    latency_s: float | None = None  # first udev event -> kdumpd's last decision logged
    span_s: float = 0.0  # first to last udev event
    max_gap_s: float = 0.0  # longest pause between two consecutive udev events
    slow_gaps: int = 0  # pauses longer than kdumpd's quiet period: each may end a burst
    reasons: list[str] = field(default_factory=list)
    udev_subsystems: set[str] = field(default_factory=set)
    udev_devpaths: set[str] = field(default_factory=set)
    # From kdumpd's decision messages (KDUMPD_SUBSYSTEM, KDUMPD_DEVPATH) and from all its
    # messages of the burst (KDUMPD_CRASH_HOTPLUG: what kdumpd read when deciding).
    kdumpd_subsystems: set[str] = field(default_factory=set)
    kdumpd_devpaths: set[str] = field(default_factory=set)
    kdumpd_crash_hotplug: list[str] = field(default_factory=list)


@dataclass
class ScenarioResult:
    name: str
    kernel: str
    setup: str
    bursts: list[BurstResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome: str = "not run"
    duration_s: float = 0.0


@dataclass
class RunResults:
    started: float = field(default_factory=time.time)
    build: dict[str, float] = field(default_factory=dict)
    build_cold: bool = False
    boots: dict[str, float] = field(default_factory=dict)
    package: str = ""
    scenarios: list[ScenarioResult] = field(default_factory=list)
    total_s: float = 0.0
    notes: list[str] = field(default_factory=list)  # per run: boot retries, kernel oopses

    def scenario(self, name: str, kernel: str, setup: str) -> ScenarioResult:
        result = ScenarioResult(name, kernel, setup)
        self.scenarios.append(result)
        return result

    def markdown(self) -> str:
        lines = [
            "# kdumpd end-to-end results (QEMU, TCG)",
            "",
            "Written by `make vm-test` (tests/vm/test_*.py); this file is the output of a real",
            "run, committed as evidence. Each burst: the events udev passed on, kdumpd's",
            "decisions for them (from `journalctl -o json -u kdumpd`), the kernel's",
            "crash_hotplug (cpu, memory) before and after, `kexec_crash_loaded` after, the",
            "crash_hotplug values kdumpd read when deciding (KDUMPD_CRASH_HOTPLUG), the",
            "reload durations kdumpd logged, how long the events took to arrive (first to",
            "last, and the longest pause between two), and the latency from the first udev",
            "event to kdumpd's last decision message. kdumpd ran with quiet_ms=250,",
            "max_delay_ms=3000.",
            "",
            "The second architecture, IBM POWER (ppc64le, pseries: scenarios P1 and P2, `make",
            "vm-ppc64le`, the last step of `.ci/run`), has its evidence beside this file in",
            "[RESULTS-ppc64le.md](RESULTS-ppc64le.md).",
            "",
            f"- run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(self.started))}, "
            f"host {platform.node() or '?'}, {qemu_version()}",
            f"- package under test: {self.package}",
            "- guest image: " + ("built in this run (cold)" if self.build_cold else "from cache")
            + (", " + ", ".join(f"{k} {v:.0f} s" for k, v in self.build.items())
               if self.build else ""),
            "- boots to a root shell: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in self.boots.items()),
            f"- whole vm-test session: {self.total_s:.0f} s",
            *[f"- {note}" for note in self.notes],
            "",
        ]
        for scenario in self.scenarios:
            lines += [
                f"## {scenario.name}: {scenario.outcome.upper()} ({scenario.duration_s:.0f} s)",
                "",
                f"Kernel {scenario.kernel}. {scenario.setup}",
                "",
            ]
            if scenario.bursts:
                lines += [
                    "| burst | udev events | kdumpd events | decisions | reloads | failed "
                    "| crash_hotplug before | crash_hotplug after | kexec_crash_loaded after "
                    "| KDUMPD_CRASH_HOTPLUG | reload ms | events span / max gap s | latency s |",
                    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
                ]
                for b in scenario.bursts:
                    latency = f"{b.latency_s:.2f}" if b.latency_s is not None else "-"
                    lines.append(
                        f"| {b.burst} | {b.udev_events} | {b.kdumpd_events} | {b.decisions} "
                        f"| {b.reloads} | {b.failed} | {b.before.hotplug()} "
                        f"| {b.after.hotplug()} | {b.after.loaded} "
                        f"| {', '.join(b.kdumpd_crash_hotplug) or '-'} "
                        f"| {', '.join(map(str, b.reload_ms)) or '-'} "
                        f"| {b.span_s:.2f} / {b.max_gap_s:.2f} | {latency} |"
                    )
                lines.append("")
                reasons = sorted({r for b in scenario.bursts for r in b.reasons})
                if reasons:
                    lines += ["kdumpd's reasons:", ""]
                    lines += [f"- {r}" for r in reasons]
                    lines.append("")
            if scenario.notes:
                lines += [f"- {note}" for note in scenario.notes]
                lines.append("")
        return "\n".join(lines)

    def write(self, path: Path = RESULTS) -> None:
        """Write the run's Markdown, keeping the hand-written part (:data:`HAND_WRITTEN`)."""
        old = path.read_text() if path.exists() else ""
        at = old.find(HAND_WRITTEN)
        path.write_text(self.markdown() + ("\n" + old[at:] if at >= 0 else ""))


def qemu_version() -> str:
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "QEMU ?"
    return out.splitlines()[0] if out else "QEMU ?"
