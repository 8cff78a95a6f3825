"""What a reload would load, for `kdumpd status`: the typed ``image`` object of
``status --json`` (schema 4) and its text lines.

Keys (README, "status --json"): ``family``; ``kernel``, ``initrd`` (paths, the initrd
null when there is none) and ``append``, each with its ``*_from`` (an object:
``source``, ``file``, ``key``, ``inputs``, see backends/distro/origin.py; null for an
initrd there is none of); ``initrd_required``
(bool); ``mode`` (kdumpd's own load: ``[reload] load``; null for the distribution's
tools); ``added`` and ``removed`` (command-line options kdumpd changed, lists) with
``changed_why`` (null when none); ``missing`` (kernel/initrd that do not exist, list);
``kexec_args`` (the administrator's kexec arguments as kdumpd's load uses them: ``kept``,
``dropped``, ``mode`` asked or null, ``from`` (an origin), ``note``; null when the distribution has
no such setting or another backend loads); ``not_derived`` (parts of the distribution's
command line that could not be derived here, one line each, list); ``warning`` and
``error`` (strings or null).
"""

from __future__ import annotations

from typing import Any

from kdumpd.backends.distro import CrashImage, origin


def report(image: CrashImage, *, mode: str | None, missing: list[str],
           kexec_note: str | None, warning: str | None) -> dict[str, Any]:
    """``image`` as the typed ``image`` object; ``kexec_note`` None: no kexec_args."""
    args = image.kexec_args
    return {
        "family": image.family,
        "kernel": str(image.kernel), "kernel_from": image.kernel_from.as_dict(),
        "initrd": None if image.initrd is None else str(image.initrd),
        "initrd_from": None if image.initrd is None or image.initrd_from is None
        else image.initrd_from.as_dict(),
        "append": image.append, "append_from": image.append_from.as_dict(),
        "initrd_required": image.initrd_required,
        "mode": mode,
        "added": list(image.added), "removed": list(image.removed),
        "changed_why": image.changed_why or None,
        "missing": missing,
        "kexec_args": None if kexec_note is None else {
            "kept": list(args.kept), "dropped": list(args.dropped),
            "mode": args.mode or None,
            "from": None if image.kexec_args_from is None else image.kexec_args_from.as_dict(),
            "note": kexec_note or None,
        },
        "not_derived": list(image.not_derived),
        "warning": warning,
        "error": None,
    }


def failed(error: str) -> dict[str, Any]:
    """The image could not be read: every key, the reason in ``error``."""
    keys = ("family", "kernel", "kernel_from", "initrd", "initrd_from", "append",
            "append_from", "initrd_required", "mode", "changed_why", "kexec_args", "warning")
    return {**dict.fromkeys(keys), "added": [], "removed": [], "missing": [],
            "not_derived": [], "error": error}


def lines(image: dict[str, Any]) -> list[str]:
    """The text output's lines for ``image``, indented under the backend."""
    if image.get("error"):
        return [f"  error: {image['error']}"]
    out = [f"  family: {image['family']}",
           f"  kernel: {image['kernel']} ({origin.text(image['kernel_from'])})",
           "  initrd: " + (f"{image['initrd']} ({origin.text(image['initrd_from'])})"
                           if image["initrd"] else "none"),
           f"  append: {image['append']} ({origin.text(image['append_from'])})"]
    if image["mode"] is not None:
        out.append(f"  mode: {image['mode']}")
    out.append(f"  initrd required: {'yes' if image['initrd_required'] else 'no'}")
    for key in ("added", "removed"):
        if image[key]:
            out.append(f"  {key}: {' '.join(image[key])} ({image['changed_why']})")
    if image["missing"]:
        out.append(f"  missing: {', '.join(image['missing'])}: a reload cannot load this "
                   "image")
    args = image["kexec_args"]
    if args is not None:
        text = f"{' '.join(args['kept']) or 'none kept'} ({origin.text(args['from'])})"
        if args["note"]:
            text += f"; {args['note']}"
        if args["dropped"]:
            text += "; not passed: " + ", ".join(args["dropped"])
        out.append(f"  kexec args: {text}")
    for line in image.get("not_derived") or ():
        out.append(f"  not derived: {line}")
    if image["warning"]:
        out.append(f"  warning: {image['warning']}")
    return out
