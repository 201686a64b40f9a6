# -*- coding: utf-8 -*-
# Records how long a playbook's tasks took, from the start of the first task
# to the end of the play, into the file named by BENCH_TIMER_OUT: the part of
# a run that differs between the ways of running a module (ansible-playbook's
# own start-up, the same for every way, is left out and reported apart).
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
    name: bench_timer
    type: aggregate
    short_description: write the tasks' wall time to $BENCH_TIMER_OUT
    description: Used by bench/modules/run.sh only.
    requirements: [enable in ANSIBLE_CALLBACKS_ENABLED]
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.started = time.monotonic()
        self.first_task = None
        self.tasks = 0
        self.failed = 0

    def v2_playbook_on_task_start(self, task, is_conditional):
        if self.first_task is None:
            self.first_task = time.monotonic()
        self.tasks += 1

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self.failed += 1

    def v2_runner_on_unreachable(self, result):
        self.failed += 1

    def v2_playbook_on_stats(self, stats):
        end = time.monotonic()
        out = os.environ.get('BENCH_TIMER_OUT')
        if not out:
            return
        with open(out, 'w') as f:
            json.dump({'tasks_seconds': end - (self.first_task or end), 'startup_seconds': (self.first_task or end) - self.started,
                       'tasks': self.tasks, 'failed': self.failed}, f)
