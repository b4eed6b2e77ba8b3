"""What a command keeps in its process from one step to the next, in one public object, `COMMAND`.

Hydra calls a sweep's job function itself, so what the preflight learned and when the work began cannot be
passed to it as arguments: the command leaves them here. An API call runs commands in a process that goes on
afterwards, so cnntrain.process_state takes a snapshot of this object before the call and restores it after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

PROCESS_STARTED = time.perf_counter()  # as early as a command can read a clock: start-up is measured from here


@dataclass
class CommandState:
    """started: the perf_counter() reading the current command's (or API call's) work is timed from;
    in_process_only: the command started no other process, so it may end without Python's teardown
    (cnntrain.commands.entry.leave); known_data: the DataDescription the preflight made for each dataset config,
    by cnntrain.commands.preflight.data_key, so a job does not read or scan the data a second time."""

    started: float = PROCESS_STARTED
    in_process_only: bool = False
    known_data: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> CommandState:
        return replace(self, known_data=dict(self.known_data))

    def restore(self, saved: CommandState) -> None:
        self.started, self.in_process_only = saved.started, saved.in_process_only
        self.known_data = dict(saved.known_data)


COMMAND = CommandState()
