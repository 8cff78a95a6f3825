# -*- coding: utf-8 -*-
# Copyright: kdumpd developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)

# The fleet report's table: one row per host from what kdumpd_info registered (or the
# failure or unreachability that took its place), plain aligned values, the problem named
# in the row, and the hosts that have no usable crash kernel. Runs on the controller.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: fleet_report
short_description: One aligned row per host from kdumpd_info's registered results
version_added: "0.1.0"
description:
  - Takes the inventory hosts of the report and C(hostvars), reads each host's registered
    C(kdumpd_info) result (a success, a failure such as kdumpd not installed, or an
    unreachable host) and returns the report's lines and the hosts without a usable crash
    kernel.
positional: hostvars, result
options:
  _input:
    description: The host names to report on, in order.
    type: list
    elements: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: raw
    required: true
  result:
    description: The name the C(kdumpd_info) task registered its result under.
    type: str
    default: kdumpd_info
"""

EXAMPLES = r"""
- name: The report's lines
  ansible.builtin.debug:
    msg: "{{ (groups['all'] | kdumpd.kdumpd.fleet_report(hostvars)).lines }}"
"""

RETURN = r"""
_value:
  description:
    - C(lines) (the header, one row per host, a summary line), C(rows) (per host
      C(host), C(state) ok, UNUSABLE, FAILED, UNREACHABLE or NO ANSWER, the row's values
      and C(problem)), C(unusable) (the names of the hosts whose state is not ok) and
      C(failure) (one line naming them, or an empty string).
  type: dict
"""

COLUMNS = (("host", "HOST"), ("state", "STATE"), ("loaded", "LOADED"),
           ("header", "HEADER"), ("keeps", "KERNEL KEEPS"), ("owed", "OWED"),
           ("agrees", "AGREES"), ("no_crash_kernel_s", "NO-CK S"), ("stale_s", "STALE S"),
           ("capacity", "CAPACITY"), ("problem", "PROBLEM"))

EMPTY = "-"


def _yes_no(value):
    if value is None:
        return EMPTY
    return "yes" if value else "no"


def _seconds(exposure, key):
    value = (exposure or {}).get(key) if isinstance(exposure, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return EMPTY
    return "%.1f" % value


def _keeps(keeps):
    """Which subsystems the kernel keeps the crash kernel current for: cpu+memory, cpu,
    memory, none."""
    if not isinstance(keeps, dict) or not keeps:
        return EMPTY
    kept = [name for name in ("cpu", "memory") if keeps.get(name)]
    return "+".join(kept) if kept else "none"


def _one_line(text):
    text = " ".join(str(text).split())
    if text.startswith("Task failed: "):  # ansible-core 2.19's prefix on every failure
        text = text[len("Task failed: "):]
    return text or EMPTY


def _result(hostvars, host, name):
    try:
        variables = hostvars[host]
    except KeyError:
        return None
    try:
        result = variables[name]
    except KeyError:
        return None
    return result if isinstance(result, dict) else None


def row(host, result):
    """One host's row (a dict of the COLUMNS' keys) from its registered result (None: the
    task never registered one, as for a host that was unreachable without
    ignore_unreachable)."""
    values = dict((column[0], EMPTY) for column in COLUMNS)
    values["host"] = host
    if result is None:
        values.update(state="NO ANSWER", problem="no kdumpd_info result (unreachable or "
                      "not run on this host)")
    elif result.get("unreachable"):
        values.update(state="UNREACHABLE", problem=_one_line(result.get("msg") or
                                                             "unreachable"))
    elif result.get("failed") or not isinstance(result.get("kdumpd_summary"), dict):
        # failed, or a failure that failed_when: false kept going (no summary)
        values.update(state="FAILED", problem=_one_line(result.get("msg") or
                                                        "kdumpd_info failed"))
    else:
        summary = result["kdumpd_summary"]
        problems = summary.get("problems") or []
        values.update(
            state="ok" if summary.get("usable") else "UNUSABLE",
            loaded=_yes_no(summary.get("crash_kernel_loaded")),
            header=summary.get("header") or EMPTY,
            keeps=_keeps(summary.get("kernel_keeps_current")),
            owed=_yes_no(summary.get("owed")),
            agrees=_yes_no(summary.get("hardware_agrees")),
            no_crash_kernel_s=_seconds(summary.get("exposure"), "no_crash_kernel_s"),
            stale_s=_seconds(summary.get("exposure"), "stale_s"),
            capacity="LOW" if summary.get("capacity_warning") else "ok",
            problem=_one_line("; ".join(problems)) if problems else EMPTY,
        )
        if values["state"] == "UNUSABLE" and not problems:
            values["problem"] = "no usable crash kernel"
    return values


def table(rows):
    """The header and one line per row, every column but the last padded to its width."""
    heads = dict(COLUMNS)
    keys = [column[0] for column in COLUMNS]
    widths = dict((key, max([len(heads[key])] + [len(r[key]) for r in rows]))
                  for key in keys)
    lines = []
    for values in [heads] + list(rows):
        cells = [values[key].ljust(widths[key]) for key in keys[:-1]] + [values[keys[-1]]]
        lines.append("  ".join(cells).rstrip())
    return lines


def fleet_report(hosts, hostvars, result="kdumpd_info"):
    rows = [row(host, _result(hostvars, host, result)) for host in hosts]
    unusable = [r["host"] for r in rows if r["state"] != "ok"]
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary = "%d host(s): %d usable" % (len(rows), counts.get("ok", 0))
    for state in ("UNUSABLE", "FAILED", "UNREACHABLE", "NO ANSWER"):
        if counts.get(state):
            summary += ", %d %s" % (counts[state], state.lower())
    failure = ""
    if unusable:
        failure = ("%d of %d host(s) have no usable crash kernel (a panic there may give "
                   "no dump or an incomplete one; the rows say why): %s"
                   % (len(unusable), len(rows), ", ".join(unusable)))
    return {"lines": table(rows) + [summary], "rows": rows, "unusable": unusable,
            "failure": failure}


class FilterModule(object):
    def filters(self):
        return {"fleet_report": fleet_report}
