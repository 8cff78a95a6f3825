#!/usr/bin/env python3
"""Write the kdumpd(8) man page (roff) to stdout, generated from the command line itself.

Everything about commands and options comes from ``kdumpd.cli.build_parser()``; the exit
statuses from its epilog; the configuration keys and their defaults from
``kdumpd.config.Config``. Only the short FILES / HARDENING / SEE ALSO texts live here.

Usage: packaging/gen-manpage.py [-o FILE]    (run from the source tree, or with kdumpd
importable). The date is taken from SOURCE_DATE_EPOCH when set (reproducible builds).
Needs only the standard library and kdumpd itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdumpd import __version__  # noqa: E402
from kdumpd import config as configmod  # noqa: E402
from kdumpd.cli import build_parser  # noqa: E402

FILES = (
    (str(configmod.DEFAULT_PATH),
     "Configuration (TOML). A missing file means the defaults listed under CONFIGURATION. "
     "It must be owned by root and not be group- or world-writable, or kdumpd refuses it "
     "(exit status 78)."),
    ("/usr/share/kdumpd/kdumpd-crash-hotplug.rules",
     "Template of the block that \\fBkdumpd rule install\\fR writes into the "
     "distribution's kdump udev rules; it is not a live udev rules file."),
    ("/usr/share/kdumpd/kexec-load.conf", "Drop-in (copy it into "
     "/etc/systemd/system/kdumpd.service.d/) that lets the kexec backend use kexec_load: "
     "the load modes hotplug and plain, whose window without a crash kernel is the "
     "shortest; it gives the unit back /proc/kallsyms (exposure 2.5 to 2.7)."),
    ("/usr/share/kdumpd/distro-tools.conf", "Drop-in for the kdump-config and kdumpctl "
     "backends, whose scripts need far more than the shipped sandbox (locks, /var/crash, "
     "initrd rebuilds); it raises the unit's systemd-analyze security exposure from 2.5 "
     "to 5.1 (measured with systemd-analyze security \\-\\-offline=true, systemd 252)."),
    ("/run/kdumpd/", "Runtime directory of the service; handles-reload exists while "
     "kdumpd is in charge of reloads (the managed udev block skips the distribution's "
     "reload then)."),
    ("/run/udev/rules.d/", "With [rule] state = \"runtime\" (the default): kdumpd's "
     "override of the distribution's kdump rules (98-kexec.rules, 50-kdump-tools.rules, "
     "70-kdump.rules) while it runs; removed when it stops. Created at boot by "
     "/usr/lib/tmpfiles.d/kdumpd.conf."),
    ("/etc/udev/rules.d/", "With \\fBkdumpd rule install\\fR or [rule] state = "
     "\"present\": the same override, kept across reboots; \\fBkdumpd rule remove\\fR "
     "deletes an override kdumpd created. Vendor files under /usr/lib are never edited."),
    ("/var/lib/kdumpd/", "State directory ([state] dir): state.json (a crash kernel kdumpd "
     "owes after an unload, the hardware the loaded image describes, the last load; tied "
     "to this boot) and lock (the one-owner lock of \\fBkdumpd run\\fR and "
     "\\fBkdumpd reload\\fR). As root, kdumpd refuses (exit status 78) a state "
     "directory, or the directory of [state] control, that is not root's or that others "
     "can write, sticky or not; where it does not exist yet, the same of the directory it "
     "would be created in."),
)

SIGNALS = (
    ("SIGTERM, SIGINT", "Stop. A load in flight finishes first; if kdumpd owes a crash "
     "kernel it makes one last bounded attempt, then exits (status 1 if still owed)."),
    ("SIGHUP", "Re-read the configuration (systemctl reload kdumpd) and apply [rule] "
     "state; a broken file, or a change only a restart can apply (state.dir, "
     "state.control, rule.handover, sysfs.root), is logged and the old configuration kept."),
    ("SIGUSR1", "Decide now over both subsystems, as if a burst had ended "
     "(\\fBkdumpd reload\\fR asks over the control socket instead and waits for the "
     "answer)."),
)

ENVIRONMENT = (
    ("NOTIFY_SOCKET", "Set by systemd (Type=notify): READY=1, STATUS=, STOPPING=1 and "
     "watchdog keep-alives go there."),
    ("WATCHDOG_USEC, WATCHDOG_PID", "Set by systemd (WatchdogSec=): kdumpd pets the "
     "watchdog at half the period, also while a stop waits for a load."),
    ("JOURNAL_STREAM", "Set by systemd: when stderr is the journal, kdumpd logs with "
     "structured fields (MESSAGE_ID, priorities) instead of plain lines."),
)

EXAMPLES = (
    ("Is the crash kernel current, and what would a reload load?", "kdumpd status"),
    ("The same for scripts (see JSON OUTPUT).", "kdumpd status \\-\\-json"),
    ("What would a reload do now, without doing it?", "kdumpd reload \\-\\-dry\\-run"),
    ("Keep the distribution's rules quiet persistently, showing the change first.",
     "kdumpd rule install \\-\\-check \\-\\-diff\n.br\nkdumpd rule install "
     "\\-\\-backup"),
    ("Watch events and decisions without root and without changing anything.",
     "kdumpd run \\-\\-dry\\-run"),
)

JSON_KEYS = (
    ("schema_version", "4 (changes only when a key changes meaning or type; 3 made image "
     "typed, 4 made every *_from an object)."),
    ("kexec_crash_loaded, kexec_crash_size, crash_elfcorehdr_size",
     "The kernel's values as numbers, or null; kexec_crash_size is summed over "
     "/proc/iomem's Crash kernel ranges (reading /sys/kernel/kexec_crash_size takes the "
     "kexec lock)."),
    ("crash_memory_reserved", "Boolean: a Crash kernel range exists (booted with "
     "crashkernel=)."),
    ("crash_hotplug", "Object: cpu and memory, each 1, 0 or null."),
    ("sysfs_problems", "Object: why a value above is null (absent, unreadable, not a number)."),
    ("crash_kernel_loaded, kernel_keeps_current", "Booleans (the latter per subsystem)."),
    ("backend, backend_action, image", "The backend, what a reload would run, and the "
     "image object (null for the fake backend): family; kernel, initrd (paths, initrd null "
     "when none) and append, each with its *_from (an origin, below); initrd_required "
     "(boolean); mode (null "
     "for kdumpctl and kdump-config); added, removed (lists of command-line options) and "
     "changed_why; missing (list); kexec_args (object: kept, dropped, mode, from (an "
     "origin), note; or "
     "null); not_derived (list: parts of the distribution's command line that could not be "
     "derived here, one line each); warning (the dump kernel may take memory hot-added "
     "before the panic as its "
     "own, naming the setting to fix) and error (strings or null)."),
    ("origin (kernel_from, initrd_from, append_from, kexec_args.from)", "Object or null "
     "(null: no such part, an initrd there is none of): source, file, key, inputs. source "
     "is setting (the value is the setting key in file, as written), kdumpd-config "
     "(kdumpd's own key, reload.kernel, reload.initrd or reload.append; file null: the "
     "configuration kdumpd runs with), running-kernel (the running kernel's image or "
     "initrd), kdump-config, kdumpctl, load.sh (what that distribution tool computes) or "
     "kdumpd (kdumpd's own command line from /proc/cmdline without a distribution kdump). "
     "file and key are null unless stated; inputs lists what a tool computed the value from "
     "as objects with file and key (key null for a whole file, such as /proc/cmdline), only "
     "settings that are set."),
    ("owed, hardware_agrees", "Booleans (hardware_agrees is null when nothing is recorded "
     "or no crash kernel is loaded)."),
    ("recorded_hardware, recorded_fingerprint, current_hardware, current_fingerprint",
     "Strings or null."),
    ("last_load", "Object or null: at (Unix time), how (the exact command of the load), "
     "ok, duration_s."),
    ("exposure", "Object or null (no state this boot): no_crash_kernel_s, stale_s, "
     "longest_gap_s, reloads, reloads_avoided, failures, this boot."),
    ("capacity", "Object or null: reserved_bytes, ram_bytes (the System RAM lines of "
     "/proc/iomem, driver-managed RAM left out, as kdump-utils' get_system_size counts "
     "them), recommended_bytes (0: no rule; the larger of the boot's crashkernel= range "
     "expression as the kernel applies it, RAM rounded up to 128 MiB, and kdump-utils' "
     "default for the architecture with its additions), source (which rule, on which "
     "RAM, the additions named), warning (null when the reservation fits)."),
    ("metrics", "Object or null ([metrics] textfile_dir off): file, directory_owner_uid "
     "(null when the directory cannot be opened), problem (why kdumpd.prom is not written "
     "there: a directory that is a symlink, not root's or writable by others; or null)."),
    ("architecture", "Object or null: machine (uname -m) and notes, what kdumpd does "
     "differently there from x86 (where the reservation is read, what kexec_load needs, "
     "the CPU events, whether the loaded header is read back, fadump), one string each."),
    ("kernel_skips", "Number or null: the kernel's \"kexec_trylock() failed\" lines this "
     "boot; null when the journal cannot be read. Each is a skipped header update only "
     "next to a hotplug event, else a read of crash_hotplug during a load."),
    ("crash_hotplug_from", "Object: source, read_at, why. source is read-now (this "
     "command read crash_hotplug), daemon (as the running kdumpd last read it, at read_at, "
     "Unix time, or null: never) or not-read (why names the reason: a read takes the kexec "
     "lock, so never while kdumpd runs, never while no crash kernel is loaded); read_at and "
     "why are null otherwise."),
    ("header", "Object or null ([reload] verify_header = false): the loaded header read "
     "back, as kdumpd verify --json prints it: verdict (current, stale, unloaded, unknown), "
     "why, header_address, ranges_missing, ranges_extra (lists of [start, end] inclusive), "
     "cpus_missing, loaded_cmdline, read_s, header_loads."),
    ("loaded_cmdline_warning", "String or null: why the loaded dump kernel's command line "
     "(read back) may not survive memory growth, or that it cannot be read; null when fine "
     "or when kdumpd's own image would not differ."),
    ("daemon", "Object or null (no daemon answered): what the running kdumpd knows: "
     "kexec_crash_loaded, crash_hotplug and crash_hotplug_read_at (Unix time), header (with "
     "read_at), header_verification, failed_reads, status_line."),
)

HARDENING = (
    "The shipped unit kdumpd.service runs the daemon with a tight sandbox "
    "(ProtectSystem=strict, a small capability bounding set, a system call filter): "
    "enough for the kexec backend, the uevent socket, the journal and the rule writer "
    "(/etc/udev/rules.d). The kdumpctl and kdump-config backends run the distribution's "
    "own kdump scripts, which need more (they write crash initrds and state outside those "
    "paths, rebuild initrds from the kernel modules and load with kexec_load). Copy the "
    "drop-in /usr/share/kdumpd/distro-tools.conf into /etc/systemd/system/kdumpd.service.d/ "
    "for them, and /usr/share/kdumpd/kexec-load.conf for the kexec backend's load modes "
    "hotplug and plain; then \\fBsystemctl daemon-reload\\fR and restart kdumpd."
)

SEE_ALSO = ("kdumpd.toml(5)", "kexec(8)", "kdump-config(8)", "kdumpctl(8)", "systemd.service(5)",
            "systemd.exec(5)", "udev(7)")


def roff(text: str) -> str:
    """Escape running text for roff: backslashes, and lines starting with . or '."""
    text = text.replace("\\", "\\e")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line
                     for line in text.split("\n"))


def prose(text: str) -> str:
    """Running text from the shipped configuration's comments: roff-escaped, and its
    `command` spans (Markdown-style backticks) set in bold rather than shown literally."""
    return re.sub(r"`([^`\n]+)`", lambda code: "\\fB" + code.group(1).replace("-", "\\-")
                  + "\\fR", roff(text))


def opt(text: str) -> str:
    """An option or command name: bold, with real minus signs."""
    return "\\fB" + text.replace("\\", "\\e").replace("-", "\\-") + "\\fR"


def arg(text: str) -> str:
    return "\\fI" + text.replace("\\", "\\e").replace("-", "\\-") + "\\fR"


def help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()  # noqa: SLF001 - argparse has no public API for it
    return formatter._expand_help(action) if action.help else ""  # noqa: SLF001


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of the direct subcommands, in definition order."""
    found = []
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {a.dest: a.help or "" for a in action._choices_actions}  # noqa: SLF001
            for name, sub in action.choices.items():
                found.append((name, helps.get(name, ""), sub))
    return found


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions  # noqa: SLF001
            if a.option_strings and a.help != argparse.SUPPRESS]


def option_label(action: argparse.Action) -> str:
    names = ", ".join(opt(s) for s in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or action.dest.upper()
    return f"{names} {arg(str(metavar))}"


def synopsis_option(action: argparse.Action) -> str:
    name = opt(action.option_strings[-1] if action.option_strings[-1].startswith("--")
               else action.option_strings[0])
    if action.nargs == 0:
        return f"[{name}]"
    return f"[{name} {arg(str(action.metavar or action.dest.upper()))}]"


def leaf_commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
                  ) -> list[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """Every runnable command as (words, help, parser), e.g. (("rule", "install"), ...)."""
    found = []
    for name, text, sub in subcommands(parser):
        nested = subcommands(sub)
        if nested:
            found.extend(leaf_commands(sub, (*words, name)))
        else:
            found.append(((*words, name), text, sub))
    return found


def exit_statuses(epilog: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s+(\d+)\s+(.+)$", epilog, flags=re.MULTILINE)


def config_keys(obj: object, prefix: str = "") -> list[tuple[str, object]]:
    keys: list[tuple[str, object]] = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(config_keys(value, f"{prefix}{f.name}."))
        else:
            keys.append((f"{prefix}{f.name}", value))
    return keys


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value) + '"'


def build_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc) if epoch
            else datetime.datetime.now(tz=datetime.timezone.utc))
    return when.strftime("%Y-%m-%d")


def render() -> str:
    parser = build_parser()
    prog = parser.prog
    description = parser.description or ""
    short = description.split(":")[0].strip()
    short = short[:1].lower() + short[1:]
    out = [
        '.\\" Generated by packaging/gen-manpage.py from kdumpd.cli.build_parser(); do not edit.',
        f'.TH {prog.upper()} 8 "{build_date()}" "{prog} {__version__}" "System Administration"',
        ".SH NAME",
        f"{prog} \\- {roff(short)}",
        ".SH SYNOPSIS",
    ]
    global_opts = " ".join(synopsis_option(a) for a in options(parser) if a.dest != "help")
    for words, _text, sub in leaf_commands(parser):
        out += [".HP", f"{opt(prog)} {global_opts} "
                + " ".join(opt(w) for w in words) + " "
                + " ".join(synopsis_option(a) for a in options(sub) if a.dest != "help")]
    out += [".SH DESCRIPTION", roff(description)]
    out += [".PP", "The systemd unit kdumpd.service runs " + opt(f"{prog} run") + "."]
    out += [".SH OPTIONS"]
    for action in options(parser):
        out += [".TP", option_label(action), roff(help_text(parser, action))]
    out += [".SH COMMANDS"]
    for words, text, sub in leaf_commands(parser):
        out += [".SS " + '"' + " ".join([prog, *words]).replace("-", "\\-") + '"']
        body = sub.description or text
        out += [roff(body[:1].upper() + body[1:] + ("" if body.endswith(".") else "."))]
        for action in options(sub):
            if action.dest == "help":
                continue
            out += [".TP", option_label(action), roff(help_text(sub, action))]
    out += [".SH CONFIGURATION",
            "The file " + arg(str(configmod.DEFAULT_PATH)) + " is TOML; every key is "
            "optional. The keys and their defaults:",
            ".PP", ".RS", ".nf"]
    section = None
    for key, value in config_keys(configmod.Config()):
        table, name = key.rsplit(".", 1)
        if table != section:
            out += [f"[{table}]"]
            section = table
        out += [roff(f"{name} = {toml_value(value)}")]
    out += [".fi", ".RE", ".PP",
            "Check a file with " + opt(f"{prog} config check") + "; "
            "send SIGHUP (systemctl reload kdumpd) to apply a change."]
    out += [".SH EXIT STATUS", ".TP"]
    statuses = exit_statuses(parser.epilog or "")
    if not statuses:
        raise SystemExit("gen-manpage: no exit statuses found in the parser's epilog")
    out += "\n.TP\n".join(f"{opt(code)}\n{roff(text)}" for code, text in statuses).split("\n")
    out += [".SH SIGNALS"]
    for name, text in SIGNALS:
        out += [".TP", opt(name), text]
    out += [".SH ENVIRONMENT"]
    for name, text in ENVIRONMENT:
        out += [".TP", opt(name), text]
    out += [".SH FILES"]
    for path, text in FILES:
        out += [".TP", arg(path), text]
    out += [".SH JSON OUTPUT", opt(f"{prog} status --json") + " prints one object:"]
    for key, text in JSON_KEYS:
        out += [".TP", opt(key), text]
    out += [".SH EXAMPLES"]
    for text, command in EXAMPLES:
        out += [".PP", text, ".RS", command, ".RE"]
    out += [".SH HARDENING", HARDENING]
    out += [".SH SEE ALSO", ",\n".join(
        "\\fB" + page.split("(")[0].replace("-", "\\-") + "\\fR(" + page.split("(")[1]
        for page in SEE_ALSO)]
    return "\n".join(out) + "\n"


SHIPPED_CONFIG = Path(__file__).resolve().parent / "kdumpd.toml"
# Field annotations are strings here (from __future__ import annotations).
_TYPES = {"bool": "boolean", "int": "integer", "str": "string", "Path": "path, a string"}


def described_keys(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """From the shipped, commented-out kdumpd.toml: each table's and each key's comment
    (the comment lines just above its ``#[table]`` or ``#key = value`` line)."""
    tables: dict[str, str] = {}
    keys: dict[str, str] = {}
    table, comment = "", []
    for line in text.splitlines():
        header = re.fullmatch(r"#\[([a-z.]+)\]", line.strip())
        setting = re.fullmatch(r"#([a-z_]+) = .*", line.strip())
        if header:
            table = header.group(1)
            tables[table] = " ".join(comment)
            comment = []
        elif setting:
            # Every key has a comment of its own (a key without one has no description:
            # render_toml refuses it), except that a table's only or first key may be
            # described by the table's comment, which then moves to the key.
            keys[f"{table}.{setting.group(1)}"] = " ".join(comment) or tables.pop(table, "")
            comment = []
        elif line.startswith("# "):
            comment.append(line[2:].strip())
        elif not line.strip():
            comment = []
    return tables, keys


def render_toml() -> str:
    """kdumpd.toml(5): every key with its type, default and what it changes."""
    tables, described = described_keys(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    types = {f"{prefix}.{f.name}": f.type for prefix, obj in config_tables(configmod.Config())
             for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    out = [
        '.\\" Generated by packaging/gen-manpage.py from packaging/kdumpd.toml and '
        "kdumpd.config; do not edit.",
        f'.TH KDUMPD.TOML 5 "{build_date()}" "kdumpd {__version__}" "File Formats"',
        ".SH NAME",
        "kdumpd.toml \\- configuration of kdumpd",
        ".SH SYNOPSIS", arg(str(configmod.DEFAULT_PATH)),
        ".SH DESCRIPTION",
        "A TOML file; every key is optional, a missing file means every default. An "
        "unknown key, a value of the wrong type or out of range is an error that names the "
        "key (exit status 78); the file must be owned by root and not be group- or "
        "world-writable. " + opt("kdumpd config check") + " validates it, "
        + opt("systemctl reload kdumpd") + " (SIGHUP) applies it; state.dir, state.control, "
        "rule.handover and sysfs.root apply at the next start.",
    ]
    section = None
    for key, value in config_keys(configmod.Config()):
        table, name = key.rsplit(".", 1)
        if table != section:
            # As written in the file, lower case: kdumpd refuses [SYSFS] (exit 78).
            out += [f".SH [{table}]" if "." not in table else f".SS [{table}]"]
            if tables.get(table):
                out += [prose(tables[table])]
            section = table
        kind = types.get(key)
        kind_name = _TYPES.get(str(kind), str(kind))
        text = described.get(key, "")
        if not text:
            raise SystemExit(f"gen-manpage: {key} has no comment in packaging/kdumpd.toml")
        out += [".TP", opt(name) + " (" + roff(str(kind_name)) + ", default "
                + roff(toml_value(value)) + ")", prose(text)]
    out += [".SH SEE ALSO", "\\fBkdumpd\\fR(8)"]
    return "\n".join(out) + "\n"


def config_tables(obj: object, prefix: str = "") -> list[tuple[str, object]]:
    """(table name, dataclass instance) for every table of the configuration."""
    found: list[tuple[str, object]] = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            name = f"{prefix}{f.name}"
            found.append((name, value))
            found.extend(config_tables(value, f"{name}."))
    return found


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    cli.add_argument("--page", choices=("kdumpd.8", "kdumpd.toml.5"), default="kdumpd.8",
                     help="which page (default kdumpd.8)")
    args = cli.parse_args()
    page = render() if args.page == "kdumpd.8" else render_toml()
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
