"""The one descendant walker: children files where the kernel has them, else the stat scan."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memwarden.system.probe import Probe
from memwarden.system.proctree import Stat, children, descendants, parse_stat, read_stat

DATA = Path(__file__).parent.parent / "data"
TAIL = ("1 1 0 -1 4194560 2380 0 0 0 11 4 0 0 20 0 1 0 {start} 407691264 20000 "
        "18446744073709551615 1 1 0 0 0 0 0 16781312 17415 0 0 0 17 1 0 0 0 0 0 0 0")

Tree = dict[int, tuple[str, int, dict[int, list[int]]]]

# pid -> (comm, ppid, {tid: children listed in that thread's file})
# 10 is a worker with two threads; 21 was forked from its second thread; 30 is a
# Chromium-like grandchild whose comm holds parentheses; 50 is someone else's.
TREE: Tree = {
    1: ("init", 0, {1: [10, 50]}),
    10: ("gunicorn: worker", 1, {10: [20], 11: [21]}),
    20: ("chrome", 10, {20: [30, 31]}),
    21: ("node (mcp)", 10, {21: []}),
    30: ("chrome) S 50 (x", 20, {30: [40]}),
    31: ("chrome", 20, {31: []}),
    40: ("zygote", 30, {40: []}),
    50: ("other", 1, {50: [51]}),
    51: ("other kid", 50, {51: []}),
}


def build(root: Path, with_children: bool, tree: Tree = TREE) -> str:
    for pid, (comm, ppid, threads) in tree.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {TAIL.format(start=1000 + pid)}\n")
        for tid, kids in threads.items():
            (d / "task" / str(tid)).mkdir(parents=True)
            if with_children:
                (d / "task" / str(tid) / "children").write_text(
                    "".join(f"{k} " for k in kids))
    return str(root)


@pytest.fixture(params=[True, False], ids=["children files", "stat scan"])
def tree(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return build(tmp_path / "proc", bool(request.param))


def test_both_ways_find_the_same_descendants_breadth_first(tree: str) -> None:
    found = descendants([10], tree)
    assert found is not None
    assert sorted(found[:2]) == [20, 21]
    assert sorted(found[2:4]) == [30, 31]
    assert found[4:] == [40]


def test_both_ways_find_the_same_children(tree: str) -> None:
    assert sorted(children(10, tree)) == [20, 21]
    assert sorted(children(20, tree)) == [30, 31]
    assert children(40, tree) == []
    assert children(99, tree) == []  # gone


def test_several_roots_each_descendant_once(tree: str) -> None:
    """A root below another root is a root, not one of their descendants."""
    assert descendants([20, 30, 20], tree) in ([31, 40], [40, 31])
    assert descendants([20, 21], tree) in ([30, 31, 40], [31, 30, 40])


def test_a_root_that_is_gone_has_no_descendants(tree: str) -> None:
    assert descendants([99], tree) == []


def test_a_missing_children_file_mid_walk_switches_to_the_stat_scan(tmp_path: Path) -> None:
    root = build(tmp_path / "proc", True)
    (tmp_path / "proc" / "20" / "task" / "20" / "children").unlink()
    found = descendants([10], root)
    assert found is not None and sorted(found) == [20, 21, 30, 31, 40]


def test_a_cycle_does_not_loop(tmp_path: Path) -> None:
    """Pids reused during a walk can make one process look like its own ancestor."""
    root = build(tmp_path / "proc", False,
                 {60: ("a", 61, {60: []}), 61: ("b", 60, {61: []})})
    assert descendants([60], root) == [61]


def test_unreadable_task_directories_are_reported_and_scanned_past(tmp_path: Path) -> None:
    """Tests run as root, so mode 000 stops nothing: a file where a directory should be does."""
    root = build(tmp_path / "proc", True)
    task = tmp_path / "proc" / "10" / "task"
    for tid in ("10", "11"):
        (task / tid / "children").unlink()
        (task / tid).rmdir()
    task.rmdir()
    task.write_text("")
    errors: list[str] = []
    found = descendants([10], root, lambda what, exc: errors.append(what))
    assert found is not None and sorted(found) == [20, 21, 30, 31, 40]
    assert errors == ["task"]


def test_without_proc_there_is_no_answer_and_the_error_is_reported(tmp_path: Path) -> None:
    (tmp_path / "proc").write_text("a file, not /proc\n")
    errors: list[str] = []
    assert descendants([10], str(tmp_path / "proc"),
                       lambda what, exc: errors.append(what)) is None
    assert errors == ["task", "proc"]
    assert children(10, str(tmp_path / "proc")) == []


# -- stat lines ------------------------------------------------------------------------------


@pytest.mark.parametrize(("comm", "ppid"), [("sh", 7), ("a b", 8), ("x) R 999 (y", 9),
                                            (") )", 10), ("((", 11), ("", 12)])
def test_a_stat_line_is_split_after_the_last_parenthesis(comm: str, ppid: int) -> None:
    raw = f"4242 ({comm}) Z {ppid} {TAIL.format(start=31337)}\n".encode()
    assert parse_stat(raw) == Stat("Z", ppid, 31337)


@pytest.mark.parametrize("raw", [b"", b"4242 (x) S 1 2\n", b"no parenthesis\n",
                                 b"4242 (x) S one " + TAIL.encode()])
def test_a_malformed_stat_line_is_none(raw: bytes) -> None:
    assert parse_stat(raw) is None


def test_a_recorded_tree_without_children_files_matches_the_probe() -> None:
    root = str(DATA / "proc_nochildren")
    assert descendants([4121], root) == list(Probe(root, pid=4121).descendants() or ())
    assert read_stat(4600, root) is None  # "not a stat line"


# -- this machine ----------------------------------------------------------------------------


@contextlib.contextmanager
def shell_tree() -> Iterator[subprocess.Popen[bytes]]:
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & (sleep 30 & wait) & wait"],
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(descendants([shell.pid]) or ()) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield shell
    finally:
        with contextlib.suppress(OSError):
            os.killpg(shell.pid, 9)
        shell.wait()


def _mirror_without_children_files(dest: Path) -> str:
    """This machine's /proc as a kernel without CONFIG_PROC_CHILDREN shows it."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                raw = Path(f"/proc/{name}/stat").read_bytes()
                (dest / name / "task" / name).mkdir(parents=True)
                (dest / name / "stat").write_bytes(raw)
    return str(dest)


def test_a_real_tree_is_found_the_same_both_ways(tmp_path: Path) -> None:
    with shell_tree() as shell:
        live = descendants([shell.pid])
        assert live is not None and len(live) == 3  # a sleep, a subshell, its sleep
        scanned = descendants([shell.pid], _mirror_without_children_files(tmp_path))
        assert scanned is not None and sorted(scanned) == sorted(live)
        stat = read_stat(shell.pid)
        assert stat is not None and stat.ppid == os.getpid()
