"""No orphans: process identities, subtrees, termination, the subreaper, orphan rules."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import HOLD_CONF, descendants, gunicorn, wait_for

from memwarden import events
from memwarden.hold.orphans import (
    OrphanReaper,
    Proc,
    alive,
    children,
    find_orphans,
    proc,
    set_child_subreaper,
    subtree,
    terminate,
)
from memwarden.system.proctree import subtree_pids


@contextlib.contextmanager
def spawned(*cmds: list[str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen(cmd) for cmd in cmds]
    try:
        yield procs
    finally:
        for p in procs:
            with contextlib.suppress(OSError):
                p.kill()
            p.wait()


def test_identity_survives_and_zombies_are_not_alive() -> None:
    with spawned(["true"], ["sleep", "30"]) as (quick, slow):
        wait_for(lambda: (p := proc(quick.pid)) is not None and not alive(p))
        zombie = proc(quick.pid)
        assert zombie is not None and not alive(zombie)  # exited, not yet reaped
        me = proc(slow.pid)
        assert me is not None and alive(me)
        assert not alive(Proc(slow.pid, me.start_ticks + 1)), "another process with that pid"
        assert {quick.pid, slow.pid} <= set(children(os.getpid()))
    assert proc(2**22 + 4321) is None


def test_subtree_lists_parents_then_descendants() -> None:
    with spawned(["sh", "-c", "sleep 30 & wait"]) as (shell,):
        wait_for(lambda: len(subtree([shell.pid])) == 2)
        tree = subtree([shell.pid])
        assert tree[0].pid == shell.pid
        assert children(shell.pid) == [tree[1].pid]


def test_terminate_sigterms_then_sigkills_what_ignores_it() -> None:
    with spawned(["sleep", "30"], ["sh", "-c", "trap '' TERM; sleep 30; :"]) as (polite, rude):
        wait_for(lambda: len(subtree([rude.pid])) == 2)
        procs = subtree([polite.pid, rude.pid])
        started = time.monotonic()
        termed, killed = terminate(procs, grace=0.5)
        assert termed == 3 and killed == 2  # the shell and its sleep ignore SIGTERM
        assert 0.4 < time.monotonic() - started < 3
        assert not any(alive(p) for p in procs)


def test_terminate_never_signals_a_reused_pid() -> None:
    with spawned(["sleep", "30"]) as (victim,):
        p = proc(victim.pid)
        assert p is not None
        assert terminate([Proc(p.pid, p.start_ticks - 1)], grace=0.1) == (0, 0)
        assert alive(p)


SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys, time
    from memwarden.hold.orphans import set_child_subreaper, terminate_descendants
    {body}
""")


def _run(body: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(body=textwrap.dedent(body))],
                         capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_subreaper_adopts_orphaned_grandchildren() -> None:
    found = _run("""
        ok = set_child_subreaper()
        # The shell prints its child's pid and exits: the sleep is orphaned.
        out = subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True)
        orphan = int(out.stdout)
        time.sleep(0.1)
        with open(f"/proc/{orphan}/stat") as fh:
            ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        os.kill(orphan, 9)
        print(json.dumps({"ok": ok, "adopted": ppid == os.getpid()}))
    """)
    assert found == {"ok": True, "adopted": True}
    assert set_child_subreaper.__doc__


def test_an_exiting_process_ends_all_its_descendants() -> None:
    found = _run("""
        kids = [subprocess.Popen(["sleep", "30"]),
                subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 30; :"]),
                subprocess.Popen(["sh", "-c", "sleep 30 & wait"])]
        time.sleep(0.3)
        from memwarden.hold.orphans import subtree, children
        pids = [p.pid for p in subtree(children(os.getpid()))]
        from memwarden import events
        heard = []
        events.subscribe(heard.append)
        terminate_descendants(0.5)
        alive = [p for p in pids if os.path.exists(f"/proc/{p}")
                 and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
        print(json.dumps({"pids": len(pids), "alive": alive, "heard": [repr(e) for e in heard]}))
    """)
    assert found == {"pids": 5, "alive": [],
                     "heard": ["OrphansReaped(count=5, dry_run=False)"]}


@pytest.mark.parametrize(("mode", "heard", "ends_it"), [
    ("on", [events.OrphansReaped(1)], True),
    ("dry-run", [events.OrphansReaped(1, dry_run=True)], False),
    ("off", [], False),
])
def test_the_master_publishes_the_orphans_it_ends_or_would_end(
        mode: str, heard: list[events.Event], ends_it: bool,
        published: list[events.Event]) -> None:
    gone_worker = 2**22 + 4321  # no such process: the worker was killed
    with spawned(["sleep", "30"]) as (left,):
        reaper = OrphanReaper(grace=5.0, mode=mode)  # no start(): this process stays as it is
        reaper.record(gone_worker, [left.pid])
        reaper.worker_exited(gone_worker, known=set())
        reaper.tick(known=set())  # a later tick neither repeats the line nor the event
        # Only these: a thread an earlier test left may publish other events meanwhile.
        assert [e for e in published if isinstance(e, events.OrphansReaped)] == heard
        assert (left.wait(5) == -signal.SIGTERM) if ends_it else left.poll() is None


def test_find_orphans_rules() -> None:
    a, b, c, d, svc, w = (Proc(10, 500), Proc(11, 600), Proc(12, 700), Proc(13, 300),
                          Proc(20, 100), Proc(30, 400))
    children_now = {p.pid: p for p in (a, b, c, d, svc, w)}
    known = {w.pid}
    baseline = {svc}
    recorded = {a: 99, b: w.pid}
    # a: recorded under worker 99, now gone: orphan. b: recorded under a live worker:
    # not (yet). c: unrecorded, born after the dead worker and new since the last
    # tick: orphan. d: unrecorded but born before the dead worker: not.
    found = find_orphans(children_now, known, baseline, previous_children={w, svc, d},
                         recorded=recorded, dead_worker=99, dead_worker_start=450)
    assert found == [a, c]
    # On a tick (no worker just died) only recorded descendants of gone workers count.
    assert find_orphans(children_now, known, baseline, {w, svc}, recorded, None, None) == [a]
    # c was already the master's child at the last tick: the master's own.
    assert find_orphans(children_now, known, baseline, {w, svc, c}, recorded, 99, 450) == [a]
    # without the dead worker's start time, unrecorded children are left alone
    assert find_orphans(children_now, known, baseline, {w}, recorded, 99, None) == [a]


def test_dry_run_names_the_orphans_and_leaves_them(tmp_path: Path) -> None:
    env = {"MEMWARDEN_ORPHANS": "dry-run", "MEMWARDEN_SOFT_LIMIT": "off",
           "MEMWARDEN_IDLE_LIMIT": "off", "MEMWARDEN_HARD_LIMIT": "off"}
    kids: list[int] = []
    try:
        with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], env=env) as server:
            worker = server.worker_pids(expect=1)[0]
            assert server.request("GET", "/spawn")[0] == 200
            kids = descendants(worker)
            os.kill(worker, signal.SIGKILL)
            wait_for(lambda: server.lines("memwarden.orphans", "would_terminate_orphans"))
            time.sleep(1.5)  # a few master ticks: still nothing is killed
            assert all(Path(f"/proc/{p}").exists() for p in kids)
            assert server.lines("memwarden.orphans", "terminate_orphans") == []
            assert len(server.lines("memwarden.orphans", "would_terminate_orphans")) == 1
    finally:
        for p in kids:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_master_leaves_its_own_children_at_shutdown(tmp_path: Path, sig: int) -> None:
    """The master's own service (started in on_starting) is not an orphan."""
    service_file = tmp_path / "svc.pid"
    with gunicorn("hold_app:app", tmp_path, args=["-w", "2"], config=HOLD_CONF,
                  env={"HOLD_TEST_SERVICE": str(service_file)}) as server:
        service = int(service_file.read_text())
        workers = [p for p in server.worker_pids(expect=3) if p != service]
        for w in workers:
            os.kill(w, signal.SIGKILL)
        wait_for(lambda: len(server.lines("memwarden.recycle", "worker_killed")) >= 2)
        time.sleep(1.0)
        assert Path(f"/proc/{service}").exists()
        os.kill(server.proc.pid, sig)
        server.proc.wait(15)
    try:
        assert server.lines("memwarden.orphans", "terminate_orphans") == []
    finally:
        with contextlib.suppress(OSError):
            os.kill(service, signal.SIGKILL)


# -- recorded /proc: the same walker with and without children files -------------------

DATA = Path(__file__).parent.parent / "data"


def test_without_children_files_the_subtree_comes_from_the_stat_scan() -> None:
    """A kernel without CONFIG_PROC_CHILDREN: the worker's helpers are still found."""
    root = str(DATA / "proc_nochildren")
    assert subtree_pids(4121, root) == (4200, 4201, 4300)
    assert sorted(children(4121, root)) == [4200, 4201]
    assert [p.pid for p in subtree([4121], root)] == [4121, 4200, 4201, 4300]
    assert subtree_pids(999, root) == (4500,)  # 999 in 4200's comm is not its parent


def test_with_children_files_the_subtree_follows_every_thread() -> None:
    root = str(DATA / "proc_children")
    found = subtree_pids(4121, root)
    assert sorted(found[:4]) == [4200, 4201, 4202, 4203] and found[4:] == (4300,)


def _mirror(tmp_path: Path, pid: int, self_pid: int) -> str:
    """A proc root showing ``pid`` as /proc does, whose ``self`` is ``self_pid``."""
    root = tmp_path / "proc"
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "stat").write_bytes(Path(f"/proc/{pid}/stat").read_bytes())
    (root / "self").symlink_to(str(self_pid))
    return str(root)


def test_pids_read_under_another_pid_namespace_are_never_signalled(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The same number names another process here: signalling it would hit a stranger."""
    with spawned(["sleep", "30"]) as (bystander,):
        root = _mirror(tmp_path, bystander.pid, self_pid=1)
        p = proc(bystander.pid, root)
        assert p is not None
        with caplog.at_level(logging.WARNING, logger="memwarden.safe_kill"):
            assert terminate([p], grace=0.1, proc_root=root) == (0, 0)
            assert terminate([p], grace=0.1, proc_root=root) == (0, 0)
        assert bystander.poll() is None
        refusals = [r for r in caplog.records if r.name == "memwarden.safe_kill"]
        assert len(refusals) == 1 and root in refusals[0].getMessage()


def test_our_own_namespace_under_another_root_is_signalled(tmp_path: Path) -> None:
    with spawned(["sleep", "30"]) as (child,):
        root = _mirror(tmp_path, child.pid, self_pid=os.getpid())
        p = proc(child.pid, root)
        assert p is not None
        assert terminate([p], grace=0.2, proc_root=root)[0] == 1
        assert child.wait(5) == -signal.SIGTERM
