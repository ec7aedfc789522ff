"""The service's own tooling: the local site it browses, and the sidecar launcher."""

from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["exit_with_parent"]


def exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Stop this process (SIGTERM to itself) once ``parent_pid`` is gone.

    A sidecar started by the gunicorn master must not outlive it, even when the
    master is killed without running its ``on_exit`` hook.
    """

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(interval)

    if parent_pid > 0:
        threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
