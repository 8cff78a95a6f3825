"""`kdumpd rule install|remove` and the daemon's converge step: output and logging only.

The work is in :mod:`kdumpd.rules.manage` (files) and :mod:`kdumpd.rules.planner` (text).

- :func:`main` serves the CLI: exit 0 ok, changed or nothing to do; 1 failed (with
  ``--json``: ``{"failed": true, "msg": ...}`` on stdout). Settings that cannot work
  (an unusable ``[rule] handover``) raise :class:`kdumpd.config.ConfigError` (exit 78).
- :func:`converge` serves ``kdumpd run`` (start and SIGHUP): brings the rule to
  ``[rule] state``; logs, never raises for ordinary failures.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

from kdumpd import journal_ids
from kdumpd.config import Config, ConfigError
from kdumpd.rules import manage, planner

log = logging.getLogger("kdumpd")

ACTIONS = {"install": "present", "remove": "absent"}


def _check_config(cfg: Config) -> None:
    handover = str(cfg.rule.handover)
    problem = planner.unsafe_value(handover)
    if problem:
        # It goes inside a quoted udev value: TEST=="<handover>".
        raise ConfigError("rule.handover", f"{problem} (it is used in a udev rule), "
                          f"got {handover!r}")


def main(
    action: str,
    cfg: Config,
    *,
    path: str | None,
    check: bool,
    diff: bool,
    backup: bool,
    json_out: bool,
    env: manage.Env | None = None,
    out: TextIO | None = None,
) -> int:
    """Run ``kdumpd rule ACTION``; returns the exit status. Raises ConfigError."""
    stream = out if out is not None else sys.stdout
    if action not in ACTIONS:
        raise ValueError(f"unknown rule action {action!r}")
    _check_config(cfg)
    result = manage.run(
        state=ACTIONS[action], path=path if path is not None else cfg.rule.path,
        root=cfg.rule.root, handover=cfg.rule.handover, check=check, backup=backup, env=env,
    )
    if json_out:
        print(json.dumps(result, indent=2, sort_keys=True), file=stream)
    else:
        _print_text(result, diff=diff, stream=stream)
    return 1 if result.get("failed") else 0


def _print_text(result: dict[str, Any], *, diff: bool, stream: TextIO) -> None:
    entries = result.get("results") or [result]
    for entry in entries:
        where = _where(entry)
        prefix = "failed: " if entry.get("failed") else ("changed: " if entry.get("changed")
                                                          else "ok: ")
        print(f"{prefix}{where}{entry['msg']}", file=stream)
        if entry.get("backup_file"):
            print(f"backup: {entry['backup_file']}", file=stream)
        if entry.get("validated_with"):
            print(f"checked with {entry['validated_with']}", file=stream)
        if diff and entry.get("changed") and "diff" in entry:
            d = entry["diff"]
            print(planner.diff_texts(d["before"], d["after"], f"before: {d['before_header']}",
                                     f"after: {d['after_header']}"), end="", file=stream)
    if result.get("udevd"):
        print(f"note: {result['udevd']}", file=stream)
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=stream)


def _where(entry: dict[str, Any]) -> str:
    """``"PATH: "`` unless the message already starts with the path."""
    path = entry.get("path")
    return f"{path}: " if path and not str(entry["msg"]).startswith(f"{path}: ") else ""


def converge(cfg: Config, *, dry_run: bool, env: manage.Env | None = None) -> None:
    """Bring the rule to ``cfg.rule.state`` (check mode when ``dry_run``); log the outcome.

    Raises :class:`ConfigError` for unusable settings; logs every other failure.
    """
    state = cfg.rule.state
    if state == "ignore":
        log.debug("udev rule: [rule] state = \"ignore\": not managed")
        return
    _check_config(cfg)
    try:
        result = manage.run(state=state, path=cfg.rule.path, root=cfg.rule.root,
                            handover=cfg.rule.handover, check=dry_run, env=env)
    except Exception as error:  # noqa: BLE001 - the daemon must start regardless
        log.error("udev rule: unexpected %s, rule left as it was: %s",
                  type(error).__name__, error)
        return
    for entry in result.get("results") or [result]:
        where = _where(entry)
        if entry.get("failed"):
            log.error("udev rule: %s%s", where, entry["msg"])
        elif entry.get("changed") and dry_run:
            log.info("udev rule would change (dry run): %s%s", where, entry["msg"])
        elif entry.get("changed"):
            log.info("udev rule changed: %s%s", where, entry["msg"],
                     extra={"MESSAGE_ID": journal_ids.RULE_CHANGED})
        else:
            log.info("udev rule: %s%s", where, entry["msg"])
    if result.get("udevd"):
        log.info("udev rule: %s", result["udevd"])
    for warning in result.get("warnings", []):
        log.warning("udev rule: %s", warning)
