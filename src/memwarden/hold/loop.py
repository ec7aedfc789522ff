"""One background event loop per worker process: run async code from sync handlers.

A sync handler (Flask under gunicorn) that needs async code must not build a
loop per request (each unclosed loop holds 3 fds) nor keep async objects bound
to the loop of the first request. This module keeps one loop on a daemon
thread named ``memwarden-loop`` per process and runs coroutines on it with
:func:`run`. The loop is created on first use and recreated in a forked child,
because a loop built in the gunicorn master belongs to the master.

Async context managers that must be exited by the task that entered them
(anyio cancel scopes: the MCP client, task groups) are kept open by an owner
task with :func:`hold`; other coroutines use the held value through
:func:`run`. :func:`shutdown` closes held values in reverse order, cancels what
is left, stops and closes the loop. It is idempotent, registered with atexit
and meant to be called from gunicorn's ``worker_exit`` hook as well.

The parts: the loop's thread and the calls submitted to it in
:mod:`memwarden.hold.loop_thread`; one loop per process, :func:`run`,
:func:`shutdown` and the census's tracking in :mod:`memwarden.hold.loop_run`;
held values in :mod:`memwarden.hold.loop_held`. This module names the public API.
"""

from __future__ import annotations

from memwarden.hold.loop_held import Held, hold
from memwarden.hold.loop_run import get_loop, run, shutdown
from memwarden.hold.loop_thread import THREAD_NAME

__all__ = [
    "THREAD_NAME",
    "Held",
    "get_loop",
    "hold",
    "run",
    "shutdown",
]
