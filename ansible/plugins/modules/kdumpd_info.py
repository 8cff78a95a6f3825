#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kdumpd developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)

# Runs `kdumpd status --json` on the target and returns it with a summary for a fleet
# report; imports nothing of kdumpd, changes nothing.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kdumpd_info
short_description: Whether a panic on this host would give a complete dump, as kdumpd sees it
version_added: "0.1.0"
description:
  - Runs C(kdumpd status --json) on the target and returns the status, plus a summary
    that a fleet report can tabulate and gate on (RV(kdumpd_summary)).
  - Changes nothing; check mode runs it the same way.
options:
  config:
    description:
      - The kdumpd configuration file to read; when it does not exist, kdumpd's defaults.
    type: path
    default: /etc/kdumpd/kdumpd.toml
requirements:
  - The C(kdumpd) command on the target (its package).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: kdumpd.kdumpd.crash_hotplug_rule
author:
  - kdumpd developers (@kdumpd)
"""

EXAMPLES = r"""
- name: Ask kdumpd whether a panic would give a complete dump
  kdumpd.kdumpd.kdumpd_info:
  register: kdump

- name: Stop a rollout on a host without a usable crash kernel
  ansible.builtin.assert:
    that: kdump.kdumpd_summary.usable
    fail_msg: "{{ kdump.kdumpd_summary.problems | join('; ') }}"
"""

RETURN = r"""
status:
  description: The whole C(kdumpd status --json) object (its C(schema_version) says which keys).
  returned: always
  type: dict
kdumpd_summary:
  description:
    - C(crash_kernel_loaded), C(kernel_keeps_current) (per subsystem), C(owed),
      C(hardware_agrees) (null when unknown), C(exposure) (this boot's, or null),
      C(capacity_warning) (or null), C(header) (the verdict on the loaded header read
      back, current, stale, unloaded or unknown; null when not read), C(usable) (a crash kernel is
      loaded, kdumpd owes none, and its header read back is current; where it cannot be
      read, the kernel keeps it current for every subsystem or the hardware agrees) and
      C(problems) (one line each).
  returned: always
  type: dict
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = dict(
    config=dict(type="path", default="/etc/kdumpd/kdumpd.toml"),
)


def summarise(status):
    """The fleet report's row from a `kdumpd status --json` object."""
    loaded = bool(status.get("crash_kernel_loaded"))
    keeps = dict(status.get("kernel_keeps_current") or {})
    owed = bool(status.get("owed"))
    agrees = status.get("hardware_agrees")
    capacity = status.get("capacity") or {}
    header = status.get("header") if isinstance(status.get("header"), dict) else {}
    verdict = header.get("verdict")
    problems = []
    if not loaded:
        problems.append("no crash kernel is loaded: a panic now gives no dump")
    if owed:
        problems.append("kdumpd owes a crash kernel it unloaded")
    current = bool(keeps) and all(keeps.values())
    proven = verdict in ("current", "stale")  # the header read back decides, not proxies
    if verdict == "stale":
        problems.append("the loaded header read back is STALE: %s" % header.get("why"))
    elif loaded and not proven and not current and agrees is not True:
        problems.append("the crash kernel may describe old hardware (the kernel does not "
                        "keep it current and the hardware is not known to agree)")
    image = status.get("image") or {}
    if isinstance(image, dict) and image.get("warning"):
        problems.append(image["warning"])
    if capacity.get("warning"):
        problems.append(capacity["warning"])
    if status.get("loaded_cmdline_warning"):
        problems.append(status["loaded_cmdline_warning"])
    return {
        "crash_kernel_loaded": loaded,
        "kernel_keeps_current": keeps,
        "owed": owed,
        "hardware_agrees": agrees,
        "exposure": status.get("exposure"),
        "capacity_warning": capacity.get("warning"),
        "header": verdict,
        "usable": loaded and not owed and (verdict == "current" if proven
                                           else current or agrees is True),
        "problems": problems,
    }


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    kdumpd = module.get_bin_path("kdumpd")
    if kdumpd is None:
        module.fail_json(msg="kdumpd is not installed on the target (no kdumpd command on "
                         "PATH): install kdumpd on the target first (the "
                         "kdumpd.kdumpd.kdumpd role does)")
    argv = [kdumpd, "status", "--json"]
    if os.path.exists(module.params["config"]):
        argv += ["--config", module.params["config"]]
    rc, out, err = module.run_command(argv)
    try:
        status = json.loads(out)
    except ValueError:
        status = None
    if rc != 0 or not isinstance(status, dict):
        module.fail_json(msg="kdumpd status: exit status %d: %s" % (rc, (err or out).strip()),
                         rc=rc, cmd=argv)
    module.exit_json(changed=False, status=status, kdumpd_summary=summarise(status))


if __name__ == "__main__":
    main()
