"""The summary of ``memwarden check``, logged once by a real gunicorn master at start:
in the master, not per worker, and without repeating another start line's warning."""

from __future__ import annotations

import os
import time
from pathlib import Path

from support import REPO, gunicorn

NO_LIMIT = str(REPO / "tests" / "data" / "sys_nolimit")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without MEMWARDEN_* and GUNICORN_CMD_ARGS, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("MEMWARDEN_") and k != "GUNICORN_CMD_ARGS"}
    return {**env, **extra}


def test_gunicorn_logs_the_summary_once_in_the_master(tmp_path: Path) -> None:
    env = clean_env(MEMWARDEN_SYS_ROOT=NO_LIMIT)
    with gunicorn("hold_app:app", tmp_path, args=["-w", "2", "--max-requests", "1000"],
                  env=env) as server:
        workers = server.worker_pids(expect=2)
        deadline = time.monotonic() + 15
        while len([x for x in server.lines("memwarden.recycle", "limits")]) < 2:
            assert time.monotonic() < deadline, server.log_path.read_text()[-3000:]
            time.sleep(0.05)
        summary = server.lines("memwarden.check")
        everything = server.lines()
    assert len(workers) == 2
    assert {x["pid"] for x in summary} == {server.proc.pid}
    messages = [x["message"] for x in summary]
    assert [m.split(":")[0] for m in messages] == [
        messages[0].split(":")[0], "memory limit", "caps per worker", "shedding", "actions",
        "exporters", "settings from the environment", "warning",
        "also warned at start in their own lines", "protection"]
    assert messages[0].startswith("memwarden ") and "2 worker(s)" in messages[0]
    assert messages[6] == "settings from the environment: MEMWARDEN_SYS_ROOT=" + env[
        "MEMWARDEN_SYS_ROOT"]
    assert messages[7].startswith("warning: gunicorn max_requests=1000 is set beside")
    assert messages[-1] == "protection: NOT effective: recycling by memory"
    assert [x["level"] for x in summary][-1] == "INFO"  # the warnings carry the level
    assert [x["protection_effective"] for x in summary] == [False] * len(summary)
    # The no-limit warning is the watchdog's own line, once; the summary names it.
    no_limit = [x for x in everything if "cannot recycle workers by memory" in x["message"]]
    assert [x["logger"] for x in no_limit] == ["memwarden.recycle"]
    assert messages[8].startswith("also warned at start in their own lines: no memory limit")


def test_a_replaced_when_ready_still_gets_the_summary_with_every_warning(tmp_path: Path
                                                                          ) -> None:
    """Without memwarden's when_ready the watchdog never warns: the summary, logged at the
    first fork instead, repeats nothing and leaves nothing out."""
    (tmp_path / "conf.py").write_text(
        "from memwarden.gunicorn_conf import *  # noqa: F403\n\n\n"
        "def when_ready(server):\n    pass\n")
    env = clean_env(MEMWARDEN_SYS_ROOT=NO_LIMIT)
    with gunicorn("hold_app:app", tmp_path, config=str(tmp_path / "conf.py"),
                  args=["-w", "2"], env=env) as server:
        server.worker_pids(expect=2)
        deadline = time.monotonic() + 15
        while not [x for x in server.lines("memwarden.check")
                   if x["message"].startswith("protection:")]:
            assert time.monotonic() < deadline, server.log_path.read_text()[-3000:]
            time.sleep(0.05)
        time.sleep(0.5)  # the second worker's fork, which must not log it again
        summary = server.lines("memwarden.check")
        everything = server.lines()
    assert {x["pid"] for x in summary} == {server.proc.pid}
    messages = [x["message"] for x in summary]
    assert len([m for m in messages if m.startswith("protection:")]) == 1
    warned = [m for m in messages if m.startswith("warning")]
    assert [m[:60] for m in warned] == [
        "warning (makes recycling by memory ineffective): memwarden c"]
    assert [x["logger"] for x in everything if "cannot recycle workers by memory"
            in x["message"]] == ["memwarden.check"]
    # The replaced hook was named by the hook check at on_starting: named here, once there.
    assert [m for m in messages if m.startswith("also warned")] == [
        "also warned at start in their own lines: gunicorn hooks replaced without calling "
        "memwarden's (memwarden.gunicorn)"]
    assert [x["logger"] for x in everything if "replaced without calling" in x["message"]
            and x["level"] == "WARNING"] == ["memwarden.gunicorn"]
    assert messages[-1] == "protection: NOT effective: recycling by memory; protective " \
        "actions carried by when_ready"
