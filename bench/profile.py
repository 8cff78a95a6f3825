"""`python -m bench.profile [--variant receive] [--events 38400]`: where kdumpd's CPU goes.

Starts `kdumpd run` (crash_hotplug=1, so no reload muddles the picture), attaches py-spy
(``pip install py-spy`` into the venv; not a project dependency), writes a storm of real
uevents and prints the share of samples per function, self and inclusive.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.emit import Devices, emit
from bench.kdumpd_proc import KdumpdProcess
from bench.runner import settle
from bench.scenarios import Scenario, Wave, plan
from tests.support import udev


def summarize(collapsed: str, top: int = 25) -> list[str]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    out = [f"{total} samples"]
    out.append("self:")
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out.append("inclusive:")
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--events", type=int, default=38400)
    parser.add_argument("--variant", default="", help="a bench.patched drain (poll-error, receive)")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    scenario = Scenario("profile", (Wave(args.events),), crash_hotplug="1",
                        variant=args.variant)
    with udev.running_udevd(), tempfile.TemporaryDirectory(prefix="kdumpd-bench-") as tmp:
        daemon = KdumpdProcess(Path(tmp), crash_hotplug="1", receive_buffer=128 << 20,
                               variant=args.variant)
        try:
            daemon.start()
            out = Path(tmp) / "stacks.txt"
            command = [spy, "record", "--pid", str(daemon.pid), "--rate", "2000", "--format",
                       "raw", "--output", str(out), "--nonblocking"]
            if args.native:
                command.append("--native")
            recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            before = daemon.sample()
            emitted = emit(plan(scenario), Devices.of_this_machine())
            settle(60)
            while daemon.status_count("events") < emitted.count and daemon.alive():
                time.sleep(0.1)
            time.sleep(0.5)
            after = daemon.sample()
            recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            recorder.wait(30)
        finally:
            daemon.stop()
        per_event = (after.loop_cpu_s - before.loop_cpu_s) / emitted.count * 1e6
        print(f"{emitted.count} events in {emitted.last - emitted.first:.2f} s; event loop "
              f"{per_event:.1f} µs/event (variant {args.variant or 'none'})")
        if out.exists():
            print("\n".join(summarize(out.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
