"""What memwarden loads into a sync worker: its own RSS is part of its cost."""

from __future__ import annotations

import subprocess
import sys


def test_a_sync_worker_gets_no_asyncio_from_memwarden() -> None:
    # Everything memwarden.gunicorn_conf imports in the master and in a sync
    # worker's hooks and tracker; asyncio alone is 1.5 MiB of each worker's RSS.
    code = ("import sys\n"
            "import memwarden.gunicorn_conf, memwarden.see.gunicorn_log\n"
            "from memwarden.hold import hooks, watchdog\n"
            "from memwarden.see import census, meter, wsgi\n"
            "census.census(census._probe.current())\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'asyncio'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stderr
