"""One whole install/remove run over files: read, plan, validate, write, reload udevd.

The Ansible module (and ``kdumpd rule``) call :func:`run`; it returns a dict in Ansible's
result shape and raises nothing for ordinary failures::

    from kdumpd.rules import manage
    result = manage.run(state="present", path="auto", root=Path("/"),
                        handover=Path("/run/kdumpd/handles-reload"),
                        check=module.check_mode, backup=False)
    # {"changed": bool, "msg": str, "path": str | None,
    #  "diff": {"before", "after", "before_header", "after_header"},
    #  "backup_file": str (only when one was made), "warnings": [str],
    #  "validated_with": str (how the new text was checked, after a write),
    #  "udevd": str (what happened to udevd after a change: reloaded, or why not),
    #  "failed": True (only on failure)}

Several kdump rules files (unusual) give ``results`` (one dict each) and a list ``diff``.

Vendor files (``/usr/lib/udev/rules.d``, ``/usr/lib/kdump``) are never edited: the result
goes to the same name in the layer's directory (``/etc/udev/rules.d``, or
``/run/udev/rules.d`` for ``layer="runtime"``; see :mod:`kdumpd.rules.discover`), with a
note in the block naming the vendor file and the SHA-256 of the vendor text it was built
from. An override whose rest still matches that
hash is kdumpd's own: install rebuilds it from the current vendor file (so it follows
package updates), remove deletes it. An override someone edited is managed in place like
any admin file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kdumpd import atomic
from kdumpd.command import CommandError
from kdumpd.rules import discover, planner, snippet, udev
from kdumpd.rules.discover import Target
from kdumpd.smallfile import read_regular
from kdumpd.udev_value import unsafe_value

ENCODING = ("utf-8", "surrogateescape")  # arbitrary bytes survive a round trip


@dataclass
class Result:
    """The outcome for one target."""

    path: str
    changed: bool = False
    msg: str = ""
    before: str = ""
    after: str = ""
    before_header: str = ""
    after_header: str = ""
    backup_file: str | None = None
    validated_with: str | None = None
    failed: bool = False
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"changed": self.changed, "msg": self.msg, "path": self.path}
        out["diff"] = {"before": self.before, "after": self.after,
                       "before_header": self.before_header, "after_header": self.after_header}
        if self.backup_file:
            out["backup_file"] = self.backup_file
        if self.validated_with:
            out["validated_with"] = self.validated_with
        if self.failed:
            out["failed"] = True
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


FADUMP_ENABLED = Path("sys/kernel/fadump/enabled")


def fadump_enabled(sysfs_root: Path) -> bool:
    """Firmware-assisted dump (ppc64) is on: the distribution's rules re-register it on
    memory events, and no kexec crash kernel exists for kdumpd to keep current."""
    try:
        return read_regular(sysfs_root / FADUMP_ENABLED, 64).strip() == b"1"
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class Env:
    """What a run uses from the outside world; tests inject fakes."""

    udev: udev.Udev = field(default_factory=udev.Udev)
    hooks: atomic.OsHooks = field(default_factory=atomic.OsHooks)
    template: str | None = None  # None: the packaged template
    fadump: Callable[[], bool] = field(default=lambda: fadump_enabled(Path("/")))


RULES_LIMIT = 4 << 20  # a kdump rules file is a few KiB; anything this big is not one


def _read(path: Path) -> str | None:
    """The file's text, None when it does not exist. Never blocks (a FIFO) and never reads
    without bound (a device): raises NotRegularFile, or ValueError when over RULES_LIMIT."""
    try:
        data = read_regular(path, RULES_LIMIT + 1)
    except FileNotFoundError:
        return None
    if len(data) > RULES_LIMIT:
        raise ValueError(f"{path}: larger than {RULES_LIMIT} bytes: not a udev rules file")
    return data.decode(*ENCODING)


def override_note(vendor_shown: str, vendor_text: str) -> str:
    return (f"{planner.OVERRIDE_PREFIX}{vendor_shown} sha256 {planner.sha256(vendor_text)} "
            "(kdumpd rule remove deletes it)")


@dataclass(frozen=True)
class _Decision:
    plan: planner.Plan | None  # None: delete the file
    msg: str


def _decide(state: str, target: Target, *, current: str | None, vendor: str | None,
            template: str, handover: str) -> _Decision:
    """Pure: what to do with ``target`` given the texts. Raises planner.PlanError."""

    def make(text: str, wanted: str, header: tuple[str, ...] = ()) -> planner.Plan:
        return planner.plan(text, state=wanted, snippet=template, handover=handover,
                            header=header)

    vendor_shown = target.vendor_shown or ""
    if current is None:
        if state == "absent" or vendor is None:
            return _Decision(planner.Plan(False, "", "", ""), "no managed file: nothing to do")
        built = make(vendor, "present", (override_note(vendor_shown, vendor),))
        if not built.block:
            return _Decision(planner.Plan(False, "", "", ""), f"{vendor_shown}: {built.msg}")
        plan = planner.Plan(True, "", built.after, built.msg, built.label, built.managed_label,
                            built.block, built.covered, built.written)
        return _Decision(plan, f"created the override of {vendor_shown}: {built.msg}")

    parsed = planner.parse(current)
    note = parsed.override_of
    ours = note is not None and planner.sha256(parsed.base) == note[1]
    if ours and state == "absent":
        return _Decision(None, "deleted the override kdumpd had created")
    if ours and vendor is None:
        return _Decision(None, f"the vendor file {note[0] if note else ''} is gone: "
                         "deleted the override kdumpd had created")
    if ours and vendor is not None:
        built = make(vendor, "present", (override_note(vendor_shown, vendor),))
        if not built.block:
            return _Decision(None, f"{vendor_shown} now holds the lines itself: "
                             "deleted the override")
        plan = planner.Plan(built.after != current, current, built.after, built.msg,
                            built.label, built.managed_label, built.block, built.covered,
                            built.written)
        if not plan.changed:
            return _Decision(plan, f"the override of {vendor_shown} is current: nothing to do")
        if note and planner.sha256(vendor) != note[1]:
            return _Decision(plan, f"{vendor_shown} changed: rebuilt the override from it")
        return _Decision(plan, f"updated the override of {vendor_shown}: {built.msg}")
    plan = make(current, state)
    msg = plan.msg
    if note is not None and plan.changed:
        msg += " (the override was edited after kdumpd created it: managed in place)"
    return _Decision(plan, msg)


def _prepare(target: Target, *, state: str, handover: str, env: Env,
             result: Result) -> tuple[str | None, _Decision] | Result:
    """Read the texts and decide; a finished :class:`Result` when there is nothing to do
    or it failed."""
    try:
        template = env.template if env.template is not None else snippet.template()
        if state == "present" and env.fadump():
            template = snippet.without_handover(template)
            result.warnings.append(
                "fadump is enabled: the block leaves out the hand-over line, so the "
                "distribution's rules keep re-registering fadump on memory events")
        if os.path.islink(target.path):
            raise atomic.WriteError(f"{target.shown} is a symlink; kdumpd does not write "
                                    "through symlinks (use --path on the real file)")
        current = _read(target.path)
        if current is None and target.layer == "runtime" and target.copied_at_load:
            result.msg = (f"{target.shown} is absent (the distribution's kdump copies "
                          f"{target.vendor_shown} there when it loads): nothing to do")
            return result
        vendor = _read(target.vendor) if target.vendor else None
        return current, _decide(state, target, current=current, vendor=vendor,
                                template=template, handover=handover)
    except (planner.PlanError, snippet.SnippetError, atomic.WriteError) as error:
        return _failed(result, f"{target.shown}: {error}")
    except ValueError as error:  # too large
        return _failed(result, f"{target.shown}: {str(error).split(': ', 1)[-1]}")
    except OSError as error:
        return _failed(result, f"cannot read {error.filename or target.shown}: "
                       f"{error.strerror or error}")


def ensure(target: Target, *, state: str, handover: str, check: bool, backup: bool,
           env: Env, lock_wait_s: float = atomic.LOCK_WAIT_S) -> Result:
    """Converge one target. Never raises for ordinary failures: ``Result.failed``.
    ``lock_wait_s``: how long to wait for the rules lock (0: fail at once if busy)."""
    # Plain paths, as Ansible's diff callback prints "before: HEADER" itself.
    result = Result(target.shown, before_header=target.shown, after_header=target.shown)
    if target.masked:
        result.msg = f"{target.shown} masks the rules (symlink to /dev/null): nothing to do"
        return result
    if target.shadowed is not None and state == "present":
        return _shadowed(result, target)
    try:
        # Runs writing in this directory take turns (two installs, the daemon and the
        # CLI): each reads the file the other wrote, so no change is lost.
        with atomic.directory_lock(target.path.parent, lock_wait_s, required=not check):
            if not check:
                for stale in atomic.remove_stale_temps(target.path, env.hooks):
                    result.warnings.append(f"removed {stale.name}, left by an interrupted run")
            return _ensure_locked(target, state=state, handover=handover, check=check,
                                  backup=backup, env=env, result=result)
    except atomic.WriteError as error:
        return _failed(result, f"{target.shown}: {error}")


def _ensure_locked(target: Target, *, state: str, handover: str, check: bool, backup: bool,
                   env: Env, result: Result) -> Result:
    prepared = _prepare(target, state=state, handover=handover, env=env, result=result)
    if isinstance(prepared, Result):
        return prepared
    current, decision = prepared
    result.msg = decision.msg
    if decision.plan is None:  # delete kdumpd's own override
        result.changed = True
        result.before = current or ""
        result.after_header = f"{target.shown} (deleted)"
        if not check:
            try:
                done = atomic.delete_file(target.path, backup=backup, hooks=env.hooks)
            except atomic.WriteError as error:
                return _failed(result, str(error))
            _record(result, done)
        return result

    plan = decision.plan
    result.before, result.after, result.changed = plan.before, plan.after, plan.changed
    if current is None:
        result.before_header = f"{target.shown} (absent)"
    if not plan.changed:
        return result
    data = plan.after.encode(*ENCODING)
    if check:  # validated exactly as a real run would, on a private copy
        try:
            result.validated_with = _validate_copy(env.udev, plan, data, target.path.name)
        except (udev.ValidationError, OSError) as error:
            return _failed(result, f"{target.shown}: would not change: {error}")
        return result

    checked_with: list[str] = []

    def validate(temp: Path) -> None:
        checked_with.append(env.udev.validate(plan.after, set(plan.written), temp))
        # Someone (a package update, an admin) may have written the file meanwhile.
        try:
            unchanged = _read(target.path) == current
        except (OSError, ValueError):
            unchanged = False
        if not unchanged:
            raise udev.ValidationError("the file changed while kdumpd was working on it; "
                                       "run again")

    try:
        if current is None:
            target.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        done = atomic.write_file(target.path, data, like=target.vendor, validate=validate,
                                 backup=backup, hooks=env.hooks)
    except (atomic.WriteError, udev.ValidationError) as error:
        return _failed(result, f"{target.shown}: not changed: {error}")
    except OSError as error:  # the mkdir, or the re-read in validate()
        return _failed(result, f"{target.shown}: not changed: {error.strerror or error}")
    _record(result, done)
    if checked_with:
        result.validated_with = checked_with[0]
    return result


def _validate_copy(tool: udev.Udev, plan: planner.Plan, data: bytes, name: str) -> str:
    with tempfile.TemporaryDirectory(prefix="kdumpd-check-") as scratch:
        copy = Path(scratch) / name
        copy.write_bytes(data)
        return tool.validate(plan.after, set(plan.written), copy)


def _shadowed(result: Result, target: Target) -> Result:
    """Runtime layer, and the admin has a file of that name in /etc: udev reads that one."""
    shown = target.shadowed_shown
    if target.masked or (target.shadowed is not None and target.shadowed.is_symlink()):
        result.msg = f"{shown} overrides the rules (a symlink): nothing to do"
        return result
    try:
        text = _read(target.shadowed) if target.shadowed else None
    except (OSError, ValueError) as error:
        why = error.strerror if isinstance(error, OSError) else str(error).split(": ", 1)[-1]
        return _failed(result, f"cannot read {shown}: {why}")
    if text is not None and _has_block(text):
        result.msg = f"{shown} overrides {target.shown} and holds kdumpd's block: nothing to do"
    else:
        result.msg = f"{shown} overrides {target.shown}: nothing to do at runtime"
        result.warnings.append(
            f"{shown} may reload the crash kernel on hotplug as well as kdumpd; "
            "`kdumpd rule install` adds kdumpd's block to it")
    return result


def _has_block(text: str) -> bool:
    try:
        return bool(planner.parse(text).block)
    except planner.PlanError:
        return False


def _record(result: Result, done: atomic.WriteResult) -> None:
    if done.backup is not None:
        result.backup_file = str(done.backup)
    result.warnings.extend(done.warnings)


def _failed(result: Result, msg: str) -> Result:
    result.failed, result.changed, result.msg = True, False, msg
    result.before = result.after = ""
    return result


def run(
    *,
    state: str,
    path: str = "auto",
    root: Path = Path("/"),
    handover: Path = Path("/run/kdumpd/handles-reload"),
    check: bool = False,
    backup: bool = False,
    env: Env | None = None,
    layer: str = "persistent",
    wait: bool = True,
) -> dict[str, Any]:
    """Install (``state="present"``) or remove (``"absent"``) the block; an Ansible result.

    ``path`` is "auto" (discover the known files under ``root``) or an absolute path
    inside ``root``. After a change (never in check mode) udevd is told to reload its
    rules, once, when ``root`` is "/" and a udevd runs. ``wait`` False: a rules lock
    another process holds fails the run at once (the daemon's loop retries later) instead
    of waiting up to atomic.LOCK_WAIT_S. Raises nothing for ordinary failures: the dict has
    ``failed: True`` and ``msg``.
    """
    env = env or Env()
    if state not in planner.STATES:
        return {"failed": True, "changed": False, "msg": f"state must be one of "
                f"{', '.join(planner.STATES)}, got {state!r}"}
    problem = unsafe_value(str(handover))
    if problem or not handover.is_absolute():
        why = problem or "must be an absolute path"
        return {"failed": True, "changed": False, "msg": f"handover {str(handover)!r} {why}"}
    try:
        targets = (discover.discover(root, layer) if path == "auto"
                   else [discover.explicit(root, path, layer)])
    except discover.DiscoverError as error:
        return {"failed": True, "changed": False, "msg": str(error), "path": path}
    if not targets:
        return {"changed": False, "path": None,
                "msg": f"no kdump udev rules file found (looked for "
                       f"{discover.looked_for(root)}): nothing to do"}
    results = [ensure(t, state=state, handover=str(handover), check=check, backup=backup,
                      env=env, lock_wait_s=atomic.LOCK_WAIT_S if wait else 0.0)
               for t in targets]
    out = _combine(results)
    if any(r.changed for r in results) and not check:
        note = _reload(env.udev, root)
        if note.startswith("warning: "):
            out.setdefault("warnings", []).append(note[len("warning: "):])
        else:
            out["udevd"] = note
    elif check and out.get("changed"):
        out["msg"] += " (check mode: nothing written)"
    return out


def _reload(tool: udev.Udev, root: Path) -> str:
    if root != Path("/"):
        return f"not reloading udevd: the rules live under {root}, not /"
    try:
        return tool.reload()
    except CommandError as error:
        # The file is in place; udevd also notices changed rules on its own.
        return f"warning: the rules changed but udevd did not reload them: {error}"


def _combine(results: list[Result]) -> dict[str, Any]:
    if len(results) == 1:
        return results[0].as_dict()
    dicts = [r.as_dict() for r in results]
    out: dict[str, Any] = {
        "changed": any(r.changed for r in results),
        "msg": "; ".join(f"{r.path}: {r.msg}" for r in results),
        "path": results[0].path,
        "diff": [d["diff"] for d in dicts],
        "results": dicts,
    }
    if any(r.failed for r in results):
        out["failed"] = True
    warnings = [w for r in results for w in r.warnings]
    if warnings:
        out["warnings"] = warnings
    return out
