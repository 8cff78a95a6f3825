"""Applying the rule: `kdumpd rule install|remove`, and ``[rule] state`` for `kdumpd run`.

The work is in :mod:`kdumpd.rules.manage` (files) and :mod:`kdumpd.rules.planner` (text);
this module only chooses the layer and state, prints and logs.

- :func:`main` serves the CLI (the persistent layer, /etc/udev/rules.d): exit 0 ok,
  changed or nothing to do; 1 failed (with ``--json``: ``{"failed": true, "msg": ...}``
  on stdout). Settings that cannot work (an unusable ``[rule] handover``) raise
  :class:`kdumpd.config.ConfigError` (exit 78).
- :func:`converge` serves ``kdumpd run`` at start and on SIGHUP: ``"runtime"`` (the
  default) puts kdumpd's override in /run/udev/rules.d, ``"present"``/``"absent"`` install
  or remove it in /etc/udev/rules.d, ``"ignore"`` leaves both alone. :class:`Keeper` adds
  what a running daemon needs: re-apply when the rules files change on disk (SUSE's kdump
  copies its rules into /run at every load) or an apply failed (never waiting on the
  rules lock: retried on the daemon's timer), and withdraw the runtime override at stop
  (not when systemd starts kdumpd again at once: cli.cmd_run, daemon.restarting).
  Both log and never raise for ordinary failures.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Collection
from typing import Any, TextIO

from kdumpd import journal_ids
from kdumpd.config import Config, ConfigError
from kdumpd.rules import discover, manage, planner
from kdumpd.udev_value import unsafe_value

log = logging.getLogger("kdumpd")

ACTIONS = {"install": "present", "remove": "absent"}


def _check_config(cfg: Config) -> None:
    handover = str(cfg.rule.handover)
    problem = unsafe_value(handover)
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
        print(json.dumps(result, indent=2, sort_keys=True, allow_nan=False), file=stream)
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


def converge(cfg: Config, *, dry_run: bool, env: manage.Env | None = None,
             wait: bool = True, said: Collection[str] = ()) -> list[str]:
    """Bring the rule to ``cfg.rule.state`` (check mode when ``dry_run``); log the outcome.

    ``wait`` False: a rules lock another process holds fails at once (the caller tries
    again later). ``said``: failures already logged at ERROR, now logged at DEBUG only.
    Returns the failures (empty: converged). Raises :class:`ConfigError` for unusable
    settings; logs every other failure.
    """
    state = cfg.rule.state
    if state == "ignore":
        log.debug("udev rule: [rule] state = \"ignore\": not managed")
        return []
    _check_config(cfg)
    if state == "runtime":
        return _converge(cfg, "present", "runtime", dry_run, env, wait=wait, said=said)
    failures = _converge(cfg, state, "persistent", dry_run, env, wait=wait, said=said)
    # Switched from "runtime" by a SIGHUP: the runtime override goes (nothing if none).
    return failures + _converge(cfg, "absent", "runtime", dry_run, env, quiet=True,
                                wait=wait, said=said)


def withdraw(cfg: Config, *, dry_run: bool, env: manage.Env | None = None) -> None:
    """kdumpd stops: take the runtime override away (the distribution's rules work alone).
    The loop has ended: this may wait for the rules lock (atomic.LOCK_WAIT_S)."""
    if cfg.rule.state == "runtime" and not dry_run:  # a dry run wrote nothing
        _converge(cfg, "absent", "runtime", dry_run, env)


def _converge(cfg: Config, state: str, layer: str, dry_run: bool, env: manage.Env | None,
              *, quiet: bool = False, wait: bool = True,
              said: Collection[str] = ()) -> list[str]:
    try:
        result = manage.run(state=state, path=cfg.rule.path, root=cfg.rule.root,
                            handover=cfg.rule.handover, check=dry_run, env=env, layer=layer,
                            wait=wait)
    except Exception as error:  # noqa: BLE001 - the daemon must start regardless
        message = f"unexpected {type(error).__name__}, rule left as it was: {error}"
        log.log(logging.DEBUG if message in said else logging.ERROR, "udev rule: %s", message)
        return [message]
    failures = []
    for entry in result.get("results") or [result]:
        where = _where(entry)
        if entry.get("failed"):
            message = f"{where}{entry['msg']}"
            failures.append(message)
            log.log(logging.DEBUG if message in said else logging.ERROR,
                    "udev rule: %s", message)
        elif entry.get("changed") and dry_run:
            log.info("udev rule would change (dry run): %s%s", where, entry["msg"])
        elif entry.get("changed"):
            log.info("udev rule changed: %s%s", where, entry["msg"],
                     extra={"MESSAGE_ID": journal_ids.RULE_CHANGED})
        elif not quiet:
            log.info("udev rule: %s%s", where, entry["msg"])
    if result.get("udevd"):
        log.info("udev rule: %s", result["udevd"])
    for warning in result.get("warnings", []):
        log.warning("udev rule: %s", warning)
    return failures


# A failed apply is tried again at the daemon's next rules look (every RULES_WATCH_S, 2 s),
# then after 2, 4, ... up to this many looks (about a minute).
RETRY_LOOKS_MAX = 32


class Keeper:
    """``[rule] state`` for a running daemon: applied at start and on SIGHUP, applied again
    when a rules file changes on disk or an apply failed (:meth:`refresh`, on the daemon's
    timer), withdrawn at stop.

    It never waits on the rules lock (the daemon's loop must keep deciding events): a
    lock another process holds fails the apply, which is tried again on the timer with a
    backoff; a failure is logged at ERROR once, and its end at INFO.
    """

    def __init__(self, cfg: Config, *, dry_run: bool, env: manage.Env | None = None) -> None:
        self._cfg = cfg
        self._dry_run = dry_run
        self._env = env
        self._seen: object = None
        self.failures: list[str] = []  # of the last apply; empty: converged
        self._backoff = 0  # looks between retries
        self._retry_in = 0  # looks until the next retry

    def apply(self, cfg: Config | None = None) -> None:
        """Converge (to ``cfg`` when the configuration changed). Raises ConfigError."""
        if cfg is not None:
            self._cfg = cfg
        failures = converge(self._cfg, dry_run=self._dry_run, env=self._env, wait=False,
                            said=self.failures)
        self._seen = discover.signature(self._cfg.rule.root)
        if failures:
            self._backoff = min(max(1, self._backoff * 2), RETRY_LOOKS_MAX)
            self._retry_in = self._backoff
            if failures != self.failures:
                log.warning("udev rule: not applied; kdumpd tries again on its timer "
                            "(backing off to about a minute)")
        elif self.failures:
            log.info("udev rule: applied now (the earlier attempt failed)")
            self._backoff = 0
        self.failures = failures

    def refresh(self) -> None:
        """Converge again if the last apply failed (when its retry is due) or a rules file
        changed since the last run (a few stat calls)."""
        if self.failures:
            self._retry_in -= 1
            if self._retry_in <= 0:
                self._apply_again("udev rule: trying the apply that failed again")
            return
        if self._cfg.rule.state != "runtime":
            return
        seen = discover.signature(self._cfg.rule.root)
        if seen != self._seen:
            self._apply_again("udev rule: the kdump rules files changed on disk: "
                              "applying again")

    def _apply_again(self, why: str) -> None:
        log.log(logging.DEBUG if self.failures else logging.INFO, "%s", why)
        try:
            self.apply()
        except ConfigError as error:  # cannot happen: the config was vetted at apply
            log.error("udev rule: %s", error)

    def withdraw(self) -> None:
        withdraw(self._cfg, dry_run=self._dry_run, env=self._env)
