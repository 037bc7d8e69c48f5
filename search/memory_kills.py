"""A trial worker that Ray's memory monitor kills is one crashed trial, retried like any other.

Ray 2.60 reports such a kill as `OutOfMemoryError`, a `RayError` but neither a
`RayActorError` nor a `RayTaskError`. Tune's actor manager handles only those two and
raises anything else for the whole run ("Caught unexpected exception"): the sweep
stopped, `max_failures` never applied, and the job ended with a traceback. The worker is
dead all the same, as after a SIGKILL, which Tune already retries from the trial's last
checkpoint. `install()` hands Tune the kill as the actor's death (Ray has no public hook
for it: this wraps a private method, and warns if it moved).
"""
from __future__ import annotations

import logging

from ray.exceptions import OutOfMemoryError, RayActorError

__all__ = ["install", "WorkerKilledForMemory"]

log = logging.getLogger(__name__)
_installed = False


class WorkerKilledForMemory(RayActorError):
    """A trial's worker process, killed by Ray's memory monitor."""

    def __init__(self, cause: OutOfMemoryError) -> None:
        super().__init__(error_msg=f"Ray's memory monitor killed this trial's worker; the trial is retried from "
                                   f"its last checkpoint (max_failures). Ray said: {cause}")


def install() -> None:
    """Make Tune's actor manager treat a memory-monitor kill as the death of the trial's actor (once per process)."""
    global _installed
    if _installed:
        return
    try:
        from ray.air.execution._internal.actor_manager import RayActorManager

        original = RayActorManager._actor_task_failed
    except (ImportError, AttributeError) as e:
        log.warning("cannot hand Ray's memory-monitor kills to Tune's retries on this Ray (%s): such a kill "
                    "stops the sweep, which `lungsweep run` then yields as incomplete", e)
        return

    def _actor_task_failed(self, tracked_actor_task, exception):
        if isinstance(exception, OutOfMemoryError) and not isinstance(exception, RayActorError):
            exception = WorkerKilledForMemory(exception)
        return original(self, tracked_actor_task, exception)

    RayActorManager._actor_task_failed = _actor_task_failed
    _installed = True
