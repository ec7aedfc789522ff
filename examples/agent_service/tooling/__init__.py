"""The service's own tooling: the local site it browses, and the sidecar launcher."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["exit_with_parent", "serve_until_stopped"]


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


def serve_until_stopped(server: Any, parent_pid: int,
                        on_close: Callable[[], None] | None = None) -> NoReturn:
    """Serve until SIGTERM (or the launcher's exit), then close and exit 0.

    SIGTERM becomes SystemExit so that ``finally`` closes the listening socket
    and whatever ``on_close`` releases (a store's files and locks).
    """
    exit_with_parent(parent_pid)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if on_close is not None:
            on_close()
    sys.exit(0)
