"""Test-only Ansible callback: every task result and every handler run, to a JSON file.

Enabled by tests/ansible/conftest.py (ANSIBLE_CALLBACKS_ENABLED=kdumpd_record) and written
to $KDUMPD_RECORD_FILE when the playbook ends, so tests read results without a task of
their own (which would cost a second of module runs per playbook).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.module_utils.common.json import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kdumpd_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record: dict[str, Any] = {"results": {}, "handlers": []}

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self.record["handlers"].append(task.get_name())

    def _add(self, result: Any, status: str) -> None:
        body = dict(getattr(result, "_result", None) or getattr(result, "result", {}))
        body["_status"] = status
        self.record["results"][self._plain_name(result)] = body

    @staticmethod
    def _plain_name(result: Any) -> str:
        """The task's own name, without its role: "role : name" from ansible-core 2.21 on."""
        task = getattr(result, "task", None) or result._task  # `task` from 2.19 on
        return str(task.name or task.action)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._add(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._add(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._add(result, "skipped")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        path = os.environ.get("KDUMPD_RECORD_FILE")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump(self.record, out, cls=AnsibleJSONEncoder)
