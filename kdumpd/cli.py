"""The `kdumpd` command line. Parsing here; the work happens in the modules it calls.

Exit statuses: the EXIT_* constants, described once in EXIT_STATUS_HELP (shown by
--help and in the man page).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from kdumpd import __version__, app, control_socket, demo, lock, security
from kdumpd import config as configmod
from kdumpd.config import Config, ConfigError
from kdumpd.daemon import Daemon
from kdumpd.handover import Handover
from kdumpd.startup_signals import StartupSignals
from kdumpd.sysfs import Sysfs
from kdumpd.systemd import notifier, setup_logging, watchdog_interval

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNLOADED = 3  # kdumpd verify: no crash kernel loaded
EXIT_UNAVAILABLE = 69
EXIT_LOCKED = 75
EXIT_NOPERM = 77
EXIT_CONFIG = 78

STATUS_ASK_S = 2.0  # how long `kdumpd status` waits for the running daemon's answer

EXIT_STATUS_HELP = """\
exit status:
  0   success, or nothing to do (verify: the loaded header is current)
  1   the operation failed (a reload, a rule change; verify: the header is stale)
  2   usage error
  3   verify: no crash kernel is loaded
  69  a required service is unavailable (event socket; verify: cannot tell, says why)
  73  kdumpd run cannot create its hand-over file ([rule] handover): not started
  75  another kdumpd run owns reloads (its lock in the state directory is held)
  77  kdumpd run or reload without --dry-run needs root
  78  configuration error (invalid setting, unsafe file ownership or mode)
"""

log = logging.getLogger("kdumpd")

# What shtab completes an argument with (its FILE and DIRECTORY, spelled out so that the
# parser does not import shtab): packaging/kdumpd.bash is generated from this parser.
COMPLETE_FILE = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}
COMPLETE_DIR = {"bash": "_shtab_compgen_dirs", "zsh": "_files -/", "tcsh": "d"}


def _completes(action: argparse.Action, what: dict[str, str]) -> None:
    action.complete = what  # type: ignore[attr-defined]  # read by shtab


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; the man page is generated from it."""
    parser = argparse.ArgumentParser(
        prog="kdumpd",
        description="Keep the kdump crash kernel current across CPU and memory hotplug: "
        "reload it only when the kernel cannot update it itself (crash_hotplug), "
        "once per burst of events.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kdumpd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        _completes(sub.add_argument(
            "--config", type=Path, default=None, metavar="PATH",
            help=f"configuration file (default {configmod.DEFAULT_PATH}, which may be absent: "
            "then the defaults; a file named here must exist)",
        ), COMPLETE_FILE)
        return sub

    run = with_config(commands.add_parser(
        "run", help="run the daemon in the foreground",
        description="Listen for cpu and memory hotplug events and reload the crash kernel "
        "once per burst when the kernel does not keep it current.",
    ))
    run.add_argument("--dry-run", action="store_true",
                     help="decide and log 'would reload', run no backend, write no file")

    status = with_config(commands.add_parser(
        "status", help="show crash_hotplug, the crash kernel and the backend",
    ))
    status.add_argument("--json", action="store_true", help="print JSON")

    verify = with_config(commands.add_parser(
        "verify", help="read the loaded crash kernel's header back and compare it with the "
        "CPUs and memory now",
        description="Read the loaded dump kernel's command line and ELF core header from "
        "the crash reservation (/proc/kcore, root with CAP_SYS_RAWIO, x86_64) and compare "
        "them with the System RAM and present CPUs of now. Exit 0 current, 1 stale, 3 no "
        "crash kernel loaded, 69 cannot tell (the reason is printed).",
    ))
    verify.add_argument("--json", action="store_true", help="print JSON")

    reload = with_config(commands.add_parser(
        "reload", help="decide once now and reload if needed",
    ))
    reload.add_argument("--dry-run", action="store_true", help="only say what would be done")

    config = commands.add_parser("config", help="configuration commands")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    with_config(config_commands.add_parser("check", help="validate the configuration file"))

    rule = commands.add_parser(
        "rule", help="install or remove the crash_hotplug skip block in the kdump udev rules",
    )
    rule_commands = rule.add_subparsers(dest="rule_command", metavar="ACTION", required=True)
    for action, text in (("install", "install or update the managed block"),
                         ("remove", "remove the managed block")):
        sub = with_config(rule_commands.add_parser(action, help=text))
        _completes(sub.add_argument(
            "--path", metavar="FILE",
            help="rules file to manage (default: [rule] path, \"auto\" discovers)"),
            COMPLETE_FILE)
        sub.add_argument("--check", action="store_true", help="compute the change, write nothing")
        sub.add_argument("--diff", action="store_true", help="print a unified diff")
        sub.add_argument("--backup", action="store_true", help="keep a timestamped copy")
        sub.add_argument("--json", action="store_true", help="print an Ansible-style JSON result")
        _completes(sub.add_argument(
            "--root", metavar="DIR", type=_absolute_path,
            help="tree the rules are looked up under (default: [rule] root)"), COMPLETE_DIR)
        _completes(sub.add_argument(
            "--handover", metavar="FILE", type=_absolute_path,
            help="hand-over file the block tests (default: [rule] handover)"), COMPLETE_FILE)

    commands.add_parser(
        "demo", help="run the real pipeline on a fake sysfs with a simulated event storm",
    )
    return parser


def _absolute_path(text: str) -> Path:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected an absolute path")
    return Path(text)


def _config_path(args: argparse.Namespace) -> Path:
    return args.config if args.config is not None else configmod.DEFAULT_PATH


def _load_config(path: Path, *, must_exist: bool = False) -> Config:
    """Read and vet the config; raises ConfigError (exit 78)."""
    security.check_trusted_file(path, "config file")
    cfg = configmod.load(path, must_exist=must_exist, vet=security.fd_problem)
    security.check_image_files(cfg)
    # What kdumpd owes and who owns reloads live there: as trusted as the config itself,
    # and nobody else may create files in it (the lock, state.json, the control socket).
    security.check_private_dir(cfg.state.dir, "state.dir")
    security.check_private_dir(cfg.state.control.parent, "state.control")
    return cfg


def _take_lock(cfg: Config, command: str) -> int:
    """The one-owner lock; raises LockHeld."""
    try:
        return lock.acquire(cfg.state.dir, command)
    except OSError as error:
        raise ConfigError("state.dir", f"cannot use {cfg.state.dir}: {error.strerror}") from None


def cmd_run(args: argparse.Namespace, *, euid: int | None = None,
            startup: StartupSignals | None = None) -> int:
    """`kdumpd run`. ``startup``: the signals launch.py caught since the first line (else
    they are caught from here on); the daemon acts on them once its loop handles signals.
    """
    own = startup is None
    startup = startup or StartupSignals().catch()
    try:
        return _run(args, euid, startup)
    finally:
        if own:
            startup.release()


def _run(args: argparse.Namespace, euid: int | None, startup: StartupSignals) -> int:
    if not args.dry_run and (os.geteuid() if euid is None else euid) != 0:
        print("kdumpd: run needs root (kexec, the event socket, the udev rules); "
              "use --dry-run to watch without root", file=sys.stderr)
        return EXIT_NOPERM
    cfg = _load_config(_config_path(args), must_exist=args.config is not None)
    if not args.dry_run:
        # `kdumpd reload` may signal us (SIGUSR1) as soon as we hold the lock: until the
        # daemon's handler is in place, ``startup`` keeps the request for it.
        _take_lock(cfg, "run")  # held until the process exits
    rules = app.make_rule_keeper(cfg, dry_run=args.dry_run)
    rules.apply()
    daemon: Daemon | None = None
    try:
        try:
            daemon = app.make_daemon(
                cfg,
                dry_run=args.dry_run,
                reconfigure=app.reloading_config(
                    _config_path(args), rules.apply,
                    lambda path: _load_config(path, must_exist=args.config is not None), cfg),
                notify=notifier(),
                watchdog_s=watchdog_interval(),
                rules_watch=rules.refresh,
            )
        except OSError as error:
            log.error("cannot listen for udev events: %s", error.strerror or error)
            if not args.dry_run:  # one a restart left for us: we hold the lock, nobody serves
                Handover(cfg.rule.handover).hold(False)
            return EXIT_UNAVAILABLE
        return daemon.run(startup)
    finally:
        if daemon is not None and daemon.restarting:
            log.info("the udev rules stay as they are for the kdumpd that systemd starts next")
        else:
            rules.withdraw()


def _daemon_knows(path: Path) -> tuple[dict[str, Any] | None, str]:
    """What the running kdumpd knows, or None and why not ("" when none runs)."""
    try:
        return control_socket.ask_status(path, STATUS_ASK_S), ""
    except (FileNotFoundError, ConnectionRefusedError):
        return None, ""  # no daemon listens
    except PermissionError:
        return None, "only root may ask it"
    except (OSError, control_socket.ControlError) as error:
        return None, f"did not answer ({error})"


def cmd_status(args: argparse.Namespace) -> int:
    from kdumpd.hardware import read_hardware
    from kdumpd.kernel_log import open_kernel_log
    from kdumpd.loaded_header import verify
    from kdumpd.metrics import locate, textfile_dir
    from kdumpd.state import FileStore, read_boot_id
    from kdumpd.status import gather

    cfg = _load_config(_config_path(args), must_exist=args.config is not None)
    sysfs = Sysfs(cfg.sysfs.root)
    state = FileStore(cfg.state.dir, read_boot_id(cfg.sysfs.root), writable=False).load()
    hardware = read_hardware(cfg.sysfs.root)
    directory = textfile_dir(cfg.metrics.textfile_dir)
    header = verify(cfg.sysfs.root, arch=app.this_machine()) if cfg.reload.verify_header else None
    status = gather(sysfs, app.make_backend(cfg, sysfs), state, hardware,
                    app.describe_image(cfg),
                    kernel_log=open_kernel_log(cfg.events.kernel_log, cfg.sysfs.root),
                    capacity=app.capacity_reader(cfg.sysfs.root)(
                        hardware, header.loaded_cmdline if header else None),
                    daemon=_daemon_knows(cfg.state.control),
                    header=header,
                    protection=app.growth_safety(cfg),
                    arch=app.this_arch(), reservation=app.reservation(cfg.sysfs.root),
                    metrics=None if directory is None else locate(directory))
    print(status.as_json() if args.json else status.as_text())
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from kdumpd.loaded_header import CURRENT, STALE, UNLOADED, verify

    cfg = _load_config(_config_path(args), must_exist=args.config is not None)
    check = verify(cfg.sysfs.root, arch=app.this_machine())
    if args.json:
        print(json.dumps(check.as_dict(), sort_keys=True))
    else:
        print(f"loaded header: {check.line()}")
        if check.loaded_cmdline is not None:
            print(f"loaded command line: {check.loaded_cmdline}")
    return {CURRENT: EXIT_OK, STALE: EXIT_FAILURE,
            UNLOADED: EXIT_UNLOADED}.get(check.verdict, EXIT_UNAVAILABLE)


def cmd_reload(args: argparse.Namespace, *, euid: int | None = None) -> int:
    import time

    from kdumpd.controller import run_pending
    from kdumpd.events import SUBSYSTEMS

    cfg = _load_config(_config_path(args), must_exist=args.config is not None)
    if not args.dry_run and cfg.reload.backend != "fake" \
            and (os.geteuid() if euid is None else euid) != 0:
        # kexec, the distribution's tools and the daemon's control socket are root's; the
        # fake backend (tests, demos) is not.
        print("kdumpd: reload needs root (kexec, or the running daemon's control socket); "
              "use --dry-run to see the decision without root", file=sys.stderr)
        return EXIT_NOPERM
    if not args.dry_run:
        # Never reload beside the daemon: ask it to decide now, over its control socket.
        answered = _ask_daemon(cfg)
        if answered is not None:
            return answered
        try:
            _take_lock(cfg, "reload")
        except lock.LockHeld as held:
            if held.command == "run":
                raise lock.LockHeld(held.path, held.pid, "run (not answering on "
                                    f"{cfg.state.control})") from None
            raise  # another reload: exit 75
    parts = app.make_parts(cfg)
    controller = app.make_controller(cfg, parts, dry_run=args.dry_run)
    controller.start(time.monotonic())
    controller.request(time.monotonic(), SUBSYSTEMS, "kdumpd reload", due_now=True)
    run_pending(controller, parts.reloader.reload, time.monotonic, time.sleep)
    decision = controller.last_decision
    if decision is not None:
        verdict = "reload" if decision.reload else "no reload"
        done = "would " if args.dry_run and decision.reload else ""
        print(f"{done}{verdict}: {decision.reason}")
    return EXIT_OK if controller.stats.failed == 0 else EXIT_FAILURE


def _ask_daemon(cfg: Config) -> int | None:
    """Have the running daemon decide now and print its answer; its exit status, or None
    when no daemon listens on the control socket."""
    wait_s = (cfg.reload.retries + 2) * cfg.reload.timeout_s + 60.0
    try:
        answer = control_socket.ask(cfg.state.control, wait_s)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except PermissionError:
        print(f"kdumpd: reload needs root (the running daemon's {cfg.state.control} is "
              "root's)", file=sys.stderr)
        return EXIT_NOPERM
    except (control_socket.ControlError, OSError) as error:
        print(f"kdumpd: the running daemon did not answer: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"{'reload' if answer.reload else 'no reload'}: {answer.reason} "
          "(decided by the running kdumpd)")
    if answer.detail:
        print(answer.detail)
    return EXIT_OK if answer.ok else EXIT_FAILURE


def _config_problems(path: Path, must_exist: bool) -> tuple[Config | None, list[str]]:
    """`config check`: the configuration and every problem of its settings (each one
    line), not only the first that :func:`_load_config` stops at."""
    try:
        security.check_trusted_file(path, "config file")
        cfg = configmod.load(path, must_exist=must_exist, vet=security.fd_problem)
    except ConfigError as error:
        return None, [str(each) for each in error.each()]  # nothing else can be told
    problems = []
    for key, value in (("reload.kernel", cfg.reload.kernel),
                       ("reload.initrd", cfg.reload.initrd)):
        try:
            if value:
                security.check_trusted_file(Path(value), key)
        except ConfigError as error:
            problems.append(str(ConfigError(key, error.problem, error.path)))
    for key, directory in (("state.dir", cfg.state.dir),
                           ("state.control", cfg.state.control.parent)):
        try:
            security.check_private_dir(directory, key)
        except ConfigError as error:
            problems.append(str(error))
    return cfg, problems


def cmd_config(args: argparse.Namespace) -> int:
    path = _config_path(args)
    cfg, problems = _config_problems(path, args.config is not None)
    for problem in problems:
        print(f"kdumpd: {problem}", file=sys.stderr)
    if cfg is None:
        return EXIT_CONFIG
    where = path if path.exists() else f"{path} (absent: defaults)"
    # Every check a reload makes before its syscall (files, trust, the command line's
    # length against the kernel's header, the load mode): a setting no load can use is a
    # configuration error now, not a failed reload later. All of them are said.
    settings = bool(problems)
    for text, is_setting in app.preflight(cfg):
        print(f"kdumpd: {where}: {'' if is_setting else 'warning: '}a reload now would fail "
              f"before loading: {text}", file=sys.stderr)
        settings = settings or is_setting
    if settings:
        return EXIT_CONFIG
    print(f"{where}: OK (backend {app.backend_name(cfg)}, events {cfg.events.source}, "
          f"quiet {cfg.events.quiet_ms} ms, max delay {cfg.events.max_delay_ms} ms)")
    return EXIT_OK


def cmd_rule(args: argparse.Namespace) -> int:
    from kdumpd.rules.apply import main as rule_main

    try:
        cfg = _load_config(_config_path(args), must_exist=args.config is not None)
    except ConfigError as error:
        if args.json:
            import json

            print(json.dumps({"failed": True, "changed": False, "msg": str(error)}))
        raise
    overrides = {key: value for key, value in (("root", args.root), ("handover", args.handover))
                 if value is not None}
    if overrides:
        cfg = dataclasses.replace(cfg, rule=dataclasses.replace(cfg.rule, **overrides))
    return rule_main(
        args.rule_command, cfg,
        path=args.path, check=args.check, diff=args.diff, backup=args.backup, json_out=args.json,
    )


def cmd_demo(_args: argparse.Namespace) -> int:
    return demo.run(sys.stdout)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "status": cmd_status,
    "reload": cmd_reload,
    "verify": cmd_verify,
    "config": cmd_config,
    "rule": cmd_rule,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None, *, startup: StartupSignals | None = None) -> int:
    """The command line; ``startup``: `kdumpd run`'s signals caught since the first line
    (launch.py)."""
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose)
    try:
        if args.command == "run":
            return cmd_run(args, startup=startup)
        return COMMANDS[args.command](args)
    except ConfigError as error:
        print(f"kdumpd: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except lock.LockHeld as held:
        print(f"kdumpd: {held}", file=sys.stderr)
        return EXIT_LOCKED
    except KeyboardInterrupt:
        return 130
