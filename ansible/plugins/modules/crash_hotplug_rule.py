#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kdumpd developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)

# A thin adapter: options in, kdumpd.rules.manage.run() on the target, its result out.
# The planning, file handling and udev validation all live in the kdumpd package that is
# installed on the target; nothing of it is copied here.

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
  - This module is an adapter around the C(kdumpd) Python package on the target, which
    does all the work (the same code as C(kdumpd rule install|remove)). kdumpd must be
    installed on the target first; the C(kdumpd.kdumpd.kdumpd) role does that.
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
        O(handover). A missing file means kdumpd's built-in defaults.
      - Read only when one of those options is not given. Run as root, the module refuses
        it (like the daemon does) unless it is owned by root and not group- or
        world-writable.
    type: path
    default: /etc/kdumpd/kdumpd.toml
  backup:
    description:
      - Keep the previous file as C(NAME.PID.YYYY-MM-DD@HH:MM:SS~) next to it before
        changing it (removing an override kdumpd created renames it to that name).
    type: bool
    default: false
requirements:
  - The C(kdumpd) Python package importable by the target's Python interpreter.
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

import traceback
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from kdumpd.config import ConfigError
    from kdumpd.config import load as load_config
    from kdumpd.rules import manage
    from kdumpd.security import check_trusted_file
except ImportError:
    KDUMPD_IMPORT_ERROR = traceback.format_exc()
else:
    KDUMPD_IMPORT_ERROR = None

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    path=dict(type="str"),
    root=dict(type="path"),
    handover=dict(type="path"),
    config=dict(type="path", default="/etc/kdumpd/kdumpd.toml"),
    backup=dict(type="bool", default=False),
)


def settings(params):
    """path, root and handover: the options given, else the [rule] settings of the config.

    Raises kdumpd's ConfigError for an invalid or untrusted config file: like the daemon,
    the module (run as root) refuses a config someone other than root could have written,
    since it names the file to edit.
    """
    rule = None
    if None in (params["path"], params["root"], params["handover"]):
        config = Path(params["config"])
        check_trusted_file(config, "config file")
        rule = load_config(config).rule
    path = params["path"] if params["path"] is not None else rule.path
    root = Path(params["root"]) if params["root"] is not None else rule.root
    handover = Path(params["handover"]) if params["handover"] is not None else rule.handover
    return path, root, handover


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
    if KDUMPD_IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_required_lib(
                "kdumpd",
                reason="to manage the kdump udev rules: install kdumpd on the target first "
                "(the kdumpd.kdumpd.kdumpd role does)",
            ),
            exception=KDUMPD_IMPORT_ERROR,
        )
    try:
        path, root, handover = settings(module.params)
    except ConfigError as error:
        module.fail_json(msg="cannot read the kdumpd configuration: %s" % error)
    if not root.is_absolute():
        module.fail_json(msg="root %r: expected an absolute path" % str(root))
    result = manage.run(
        state=module.params["state"],
        path=path,
        root=root,
        handover=handover,
        check=module.check_mode,
        backup=module.params["backup"],
    )
    warnings, failed, result = shape(result, module._diff)
    for warning in warnings:
        module.warn(warning)
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
