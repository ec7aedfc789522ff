"""``memwarden analyze`` at fleet scale, through the real command: filters, partials, progress."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from memwarden.cli import build_parser
from memwarden.find.analyze_cli import run_analyze

from .synthetic import SyntheticWorker, linear_leak, recycle_line


def _host(path: Path, pid: int, leak: bool, hour: int) -> Path:
    worker = SyntheticWorker(pid=pid, seed=pid, census_every=20)
    records = worker.run(600, linear_leak(10_000.0) if leak else None)
    for i, record in enumerate(records):
        record["timestamp"] = f"2026-11-28T{hour:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z"
    records.append(recycle_line(pid, requests=600))
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _run(*argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["analyze", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_analyze(args, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_partials_per_host_merge_to_the_report_of_one_pass(tmp_path: Path) -> None:
    a = _host(tmp_path / "a.log", 100, leak=False, hour=1)
    b = _host(tmp_path / "b.log", 200, leak=True, hour=2)
    assert _run(str(a), "--partial", str(tmp_path / "a.json"))[0] == 0
    assert _run(str(b), "--partial", str(tmp_path / "b.json"))[0] == 0
    code, out, err = _run("--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                          "--json", str(tmp_path / "merged.json"), "--fail-on-leak")
    assert (code, err) == (1, "")
    assert "Verdict: " in out and "2 of 2 worker lives" not in out
    _run(str(a), str(b), "--json", str(tmp_path / "one.json"))
    _run(str(a), str(b), "--jobs", "2", "--json", str(tmp_path / "jobs.json"))
    one = _report(tmp_path / "one.json")
    assert _report(tmp_path / "merged.json") == one
    assert _report(tmp_path / "jobs.json") == one
    # A partial and a log file together: the log is the part after the partials.
    _run(str(b), "--merge", str(tmp_path / "a.json"), "--json", str(tmp_path / "mixed.json"))
    assert _report(tmp_path / "mixed.json") == one
    assert [w["pid"] for w in one["workers"]] == [100, 200]


def test_since_until_and_worker_keep_their_lines(tmp_path: Path) -> None:
    a = _host(tmp_path / "a.log", 100, leak=False, hour=1)
    b = _host(tmp_path / "b.log", 200, leak=True, hour=2)
    _run(str(a), str(b), "--since", "2026-11-28T02:00:00Z", "--json", str(tmp_path / "s.json"))
    since = _report(tmp_path / "s.json")
    assert [w["pid"] for w in since["workers"]] == [200]
    # Hour 1's 600 requests, and both recycle lines (the synthetic ones say 01:02:04).
    assert since["input"]["filtered_lines"] == 602
    _run(str(a), str(b), "--until", "2026-11-28T01:05", "--json", str(tmp_path / "u.json"))
    until = _report(tmp_path / "u.json")
    assert [(w["pid"], w["requests"]) for w in until["workers"]] == [(100, 300)]
    _run(str(a), str(b), "--worker", "200", "--json", str(tmp_path / "w.json"))
    assert [w["pid"] for w in _report(tmp_path / "w.json")["workers"]] == [200]


def test_bad_options_and_inputs_say_so_in_one_line(tmp_path: Path) -> None:
    code, _out, err = _run()
    assert code == 2 and "give LOG files, or --merge" in err
    not_partial = tmp_path / "x.json"
    not_partial.write_text('{"format": "something else"}', encoding="utf-8")
    code, _out, err = _run("--merge", str(not_partial))
    assert code == 2 and "not a memwarden partial summary" in err and err.count("\n") == 1
    memwarden = str(Path(sys.executable).parent / "memwarden")
    done = subprocess.run([memwarden, "analyze", "x.log", "--since", "yesterday"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "is not an ISO 8601 time" in done.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal(tmp_path: Path) -> None:
    path = _host(tmp_path / "a.log", 100, leak=False, hour=1)
    args = build_parser().parse_args(["analyze", str(path)])
    quiet = io.StringIO()
    assert run_analyze(args, stdout=io.StringIO(), stderr=quiet) == 0
    assert quiet.getvalue() == ""
    terminal = _Terminal()
    assert run_analyze(args, stdout=io.StringIO(), stderr=terminal) == 0
    shown = terminal.getvalue()
    assert "601 lines" in shown and "lines/s" in shown and "100% of" in shown
