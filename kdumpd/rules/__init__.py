"""Managing the crash_hotplug skip block in the distribution's kdump udev rules.

Modules (pure ones first):

- :mod:`~kdumpd.rules.syntax`: udev rule lines: logical lines, tokens, a strict check.
- :mod:`~kdumpd.rules.planner`: text in, new text and a diff out (``plan``, ``Plan``,
  ``PlanError``, ``unified_diff``). The Ansible module may import it.
- :mod:`~kdumpd.rules.snippet`: the template ``rules.d/kdumpd-crash-hotplug.rules``.
- :mod:`~kdumpd.rules.discover`: which file to manage, under an injected root.
- the files are written by :mod:`kdumpd.atomic` (atomic writes and deletes through
  injectable OS hooks), which the state and the metrics use too.
- :mod:`~kdumpd.rules.udev`: ``udevadm verify`` / ``control --reload`` via a runner.
- :mod:`~kdumpd.rules.manage`: one whole run, an Ansible-shaped result (``run``).
- :mod:`~kdumpd.rules.apply`: ``kdumpd rule`` (``main``) and ``kdumpd run`` (``converge``).
"""
