#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kdumpd developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)

# A thin adapter: options in, `kdumpd rule install|remove --json` on the target, its
# result out. The planning, file handling and udev validation all live in kdumpd, which is
# installed on the target; nothing of it is copied or imported here, so the module runs
# with whatever Python Ansible uses on the target.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: crash_hotplug_rule
short_description: Manage the kdumpd crash_hotplug skip block in the kdump udev rules
version_added: "0.1.0"
description:
  - Installs or removes the block between C(# BEGIN kdumpd managed block) and
    C(# END kdumpd managed block) at the top of the distribution's kdump udev rules file
    (C(98-kexec.rules) on Fedora/RHEL, C(50-kdump-tools.rules) on Debian/Ubuntu,
    C(70-kdump.rules) on SUSE). The block makes those rules skip their own crash kernel
    reload when the kernel updates the crash kernel itself (C(crash_hotplug) is 1) or
    while kdumpd runs and handles reloads.
  - A vendor file (under C(/usr/lib/udev/rules.d)) is never edited; the result is written
    to the file of the same name in C(/etc/udev/rules.d), which overrides it.
  - This module runs C(kdumpd rule install|remove --json) on the target, which does all
    the work. kdumpd must be installed on the target first; the C(kdumpd.kdumpd.kdumpd)
    role does that.
  - After a change (never in check mode) udevd is told to reload its rules, when O(root)
    is C(/) and a udevd runs.
options:
  state:
    description:
      - V(present) installs or updates the block, V(absent) removes it and restores the
        file to the bytes it had before the install (an override kdumpd created is
        deleted).
    type: str
    choices: [present, absent]
    default: present
  path:
    description:
      - The rules file to manage, an absolute path as seen inside O(root), or V(auto) to
        find the distribution's kdump rules file.
      - When not given, the C([rule] path) setting of the kdumpd configuration O(config)
        is used (its default is V(auto)).
    type: str
  root:
    description:
      - Directory the rules files are looked up and written under.
      - When not given, the C([rule] root) setting of O(config) is used (default C(/)).
        Tests and image builds point it at a scratch tree.
    type: path
  handover:
    description:
      - The file kdumpd creates while it runs; the block's hand-over line tests for it.
      - When not given, the C([rule] handover) setting of O(config) is used (default
        C(/run/kdumpd/handles-reload)), so the block matches what the daemon itself
        would install.
    type: path
  config:
    description:
      - The kdumpd configuration file that supplies the defaults of O(path), O(root) and
        O(handover). When it does not exist, kdumpd's default configuration file (or, if
        that is absent too, its built-in defaults) is used.
      - Run as root, kdumpd refuses it (like the daemon does) unless it is owned by root
        and not group- or world-writable.
    type: path
    default: /etc/kdumpd/kdumpd.toml
  backup:
    description:
      - Keep the previous file as C(NAME.PID.YYYY-MM-DD@HH:MM:SS~) next to it before
        changing it (removing an override kdumpd created renames it to that name).
    type: bool
    default: false
requirements:
  - The C(kdumpd) command on the target (its package).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Several kdump rules files found by V(auto) (unusual) are all managed; the result then
    has RV(results) with one entry each, and RV(diff) is a list.
seealso:
  - module: ansible.builtin.blockinfile
author:
  - kdumpd developers (@kdumpd)
"""

EXAMPLES = r"""
- name: Install the crash_hotplug skip block into the distribution's kdump rules
  kdumpd.kdumpd.crash_hotplug_rule:
    state: present

- name: Manage a specific file and keep a backup
  kdumpd.kdumpd.crash_hotplug_rule:
    path: /etc/udev/rules.d/98-kexec.rules
    backup: true

- name: Remove the block again
  kdumpd.kdumpd.crash_hotplug_rule:
    state: absent
"""

RETURN = r"""
changed:
  description: Whether the file was (or, in check mode, would be) changed.
  returned: always
  type: bool
msg:
  description: One line saying what was done or why nothing was.
  returned: always
  type: str
  sample: inserted the kdumpd managed block (GOTO="kdump_reload_end")
path:
  description:
    - The file managed, as seen inside O(root); V(null) when no kdump rules file was
      found.
  returned: always
  type: str
  sample: /etc/udev/rules.d/98-kexec.rules
diff:
  description:
    - The file before and after, in Ansible's diff shape (C(before), C(after),
      C(before_header), C(after_header)); a list of those when several files were
      managed.
  returned: when diff mode is on and a rules file was found
  type: dict
backup_file:
  description: The backup made by O(backup).
  returned: when a backup was made
  type: str
  sample: /etc/udev/rules.d/98-kexec.rules.4242.2026-11-24@20:18:39~
validated_with:
  description: How the new text was checked before it replaced the file.
  returned: after a write
  type: str
  sample: udevadm verify
udevd:
  description: What happened to udevd after a change (reloaded, or why not).
  returned: after a change, outside check mode
  type: str
  sample: udevd reloaded its rules
results:
  description: One result (C(changed), C(msg), C(path), ...) per file managed.
  returned: when several kdump rules files were found
  type: list
  elements: dict
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    path=dict(type="str"),
    root=dict(type="path"),
    handover=dict(type="path"),
    config=dict(type="path", default="/etc/kdumpd/kdumpd.toml"),
    backup=dict(type="bool", default=False),
)

ACTIONS = {"present": "install", "absent": "remove"}


def command(kdumpd, params, check_mode):
    """The argv of the kdumpd run for these options."""
    argv = [kdumpd, "rule", ACTIONS[params["state"]], "--json"]
    if os.path.exists(params["config"]):
        argv += ["--config", params["config"]]
    for option in ("path", "root", "handover"):
        if params[option] is not None:
            argv += ["--" + option, params[option]]
    if params["backup"]:
        argv.append("--backup")
    if check_mode:
        argv.append("--check")
    return argv


def shape(result, diff_mode):
    """Split kdumpd's result into (warnings, failed, result for exit_json/fail_json)."""
    result = dict(result)
    warnings = result.pop("warnings", [])
    failed = result.pop("failed", False)
    entries = [dict(entry) for entry in result.get("results", [])]
    if not diff_mode:
        result.pop("diff", None)
        for entry in entries:
            entry.pop("diff", None)
    if entries:
        result["results"] = entries
    return warnings, failed, result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    kdumpd = module.get_bin_path("kdumpd")
    if kdumpd is None:
        module.fail_json(msg="kdumpd is not installed on the target (no kdumpd command on "
                         "PATH): install kdumpd on the target first (the "
                         "kdumpd.kdumpd.kdumpd role does)")
    argv = command(kdumpd, module.params, module.check_mode)
    rc, out, err = module.run_command(argv)
    try:
        result = json.loads(out)
    except ValueError:
        module.fail_json(msg="%s: exit status %d: %s" % (" ".join(argv[1:3]), rc,
                                                         (err or out).strip()),
                         rc=rc, cmd=argv)
    warnings, failed, result = shape(result, module._diff)
    for warning in warnings:
        module.warn(warning)
    if failed or rc != 0:
        result.setdefault("msg", (err or "kdumpd exit status %d" % rc).strip())
        module.fail_json(rc=rc, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
