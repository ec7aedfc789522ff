"""gunicorn config for the Hold tests: memwarden's, plus an ``on_starting`` that
can move the master into a memory cgroup (``HOLD_TEST_CGROUP``: a cgroup v1
directory) and start a service of the master's own (``HOLD_TEST_SERVICE``: a
file to write its pid to), which Hold must leave alone."""

import os
import subprocess

from memwarden.gunicorn_conf import *  # noqa: F403
from memwarden.gunicorn_conf import logconfig_dict, memwarden_settings  # noqa: F401
from memwarden.gunicorn_conf import on_starting as _memwarden_on_starting

_service: list[subprocess.Popen[bytes]] = []


def on_starting(server):  # type: ignore[no-untyped-def]
    cgroup = os.environ.get("HOLD_TEST_CGROUP")
    if cgroup:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    pidfile = os.environ.get("HOLD_TEST_SERVICE")
    if pidfile:
        # Like an MCP server launched beside the app: the master's own child.
        _service.append(subprocess.Popen(["sleep", "300"]))
        with open(pidfile, "w") as fh:
            fh.write(str(_service[0].pid))
    _memwarden_on_starting(server)
