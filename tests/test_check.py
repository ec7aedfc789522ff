"""``memwarden check`` as a deploy step runs it: the real command in a subprocess, with
the environment, a gunicorn config file and a fake /proc and cgroup tree. The same
summary logged by a real gunicorn master at start: test_check_start.py."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import REPO

GIB = 2**30


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without MEMWARDEN_* and GUNICORN_CMD_ARGS, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("MEMWARDEN_") and k != "GUNICORN_CMD_ARGS"}
    return {**env, **extra}


def fake_v2(tmp: Path, limit: str) -> dict[str, str]:
    """A /proc whose process sits in cgroup v2 /app.service, whose memory.max is ``limit``."""
    (tmp / "proc" / "self").mkdir(parents=True)
    (tmp / "proc" / "self" / "cgroup").write_text("0::/app.service\n")
    group = tmp / "sys" / "fs" / "cgroup" / "app.service"
    group.mkdir(parents=True)
    (group / "memory.current").write_text("104857600\n")
    (group / "memory.max").write_text(f"{limit}\n")
    return {"MEMWARDEN_PROC_ROOT": str(tmp / "proc"), "MEMWARDEN_SYS_ROOT": str(tmp / "sys")}


def fake_v1(tmp: Path, limit: int) -> dict[str, str]:
    """cgroup v1: the memory controller's group /ctr, with memory.limit_in_bytes ``limit``."""
    (tmp / "proc" / "self").mkdir(parents=True)
    (tmp / "proc" / "self" / "cgroup").write_text("5:cpu,cpuacct:/ctr\n4:memory:/ctr\n0::/\n")
    group = tmp / "sys" / "fs" / "cgroup" / "memory" / "ctr"
    group.mkdir(parents=True)
    (group / "memory.usage_in_bytes").write_text("104857600\n")
    (group / "memory.limit_in_bytes").write_text(f"{limit}\n")
    return {"MEMWARDEN_PROC_ROOT": str(tmp / "proc"), "MEMWARDEN_SYS_ROOT": str(tmp / "sys")}


def check(tmp: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    # The module, not the console script: the same interpreter and import path as the tests.
    return subprocess.run([sys.executable, "-m", "memwarden.cli", "check", *args],
                          cwd=tmp, env=clean_env(**(env or {})), capture_output=True,
                          text=True, timeout=60)


def check_json(tmp: Path, *args: str, env: dict[str, str] | None = None
               ) -> tuple[int, dict[str, Any]]:
    proc = check(tmp, "--json", *args, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def lines_of(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return proc.stdout.splitlines()


def the_line(proc: subprocess.CompletedProcess[str], start: str) -> str:
    [line] = [x for x in lines_of(proc) if x.startswith(start)]
    return line


def warnings(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [x for x in lines_of(proc) if x.startswith("warning")]


def test_no_limit_anywhere_fails_and_says_recycling_cannot_act(tmp_path: Path) -> None:
    proc = check(tmp_path, env=fake_v2(tmp_path, "max"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert the_line(proc, "memory limit:") == (
        "memory limit: none: cgroup v2 /app.service has no memory limit")
    [warning] = warnings(proc)
    assert warning.startswith("warning (makes recycling by memory ineffective): memwarden "
                              "cannot recycle workers by memory: there is no cgroup memory limit")
    assert lines_of(proc)[-1] == "protection: NOT effective: recycling by memory"


def test_no_memory_cgroup_at_all_is_the_same_failure(tmp_path: Path) -> None:
    env = {"MEMWARDEN_PROC_ROOT": str(tmp_path / "none"), "MEMWARDEN_SYS_ROOT": str(tmp_path)}
    proc = check(tmp_path, env=env)
    assert proc.returncode == 1
    assert the_line(proc, "memory limit:").startswith(
        "memory limit: none: no memory cgroup found under")


def test_a_cgroup_v2_limit_gives_each_worker_its_caps(tmp_path: Path) -> None:
    proc = check(tmp_path, "-w", "4", env=fake_v2(tmp_path, str(4 * GIB)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert the_line(proc, "memory limit:") == (
        "memory limit: 4GiB (4294967296 bytes) from cgroup v2 memory.max of /app.service")
    assert the_line(proc, "caps per worker:") == (
        "caps per worker: share 1GiB (4 worker(s)); idle 614.4MiB (60% of the share, default);"
        " soft 819.2MiB (80% of the share, default); hard 972.8MiB (95% of the share, default)")
    assert warnings(proc) == []
    assert lines_of(proc)[-1] == "protection: effective, no warnings"
    code, data = check_json(tmp_path, "-w", "4", env=fake_v2(tmp_path / "j", str(4 * GIB)))
    assert code == 0 and data["exit_code"] == 0 and data["protection_effective"] is True
    assert data["limit"]["bytes"] == 4 * GIB and data["limit"]["source"] == "cgroup v2 memory.max"
    assert data["caps"]["worker_share_bytes"] == GIB
    assert data["caps"]["soft_limit_bytes"] == int(GIB * 0.8)
    assert data["caps"]["hard_limit_bytes"] == int(GIB * 0.95)


def test_a_cgroup_v1_limit_is_read_from_memory_limit_in_bytes(tmp_path: Path) -> None:
    proc = check(tmp_path, "-w", "2", env=fake_v1(tmp_path, 2 * GIB))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert the_line(proc, "memory limit:") == (
        "memory limit: 2GiB (2147483648 bytes) from cgroup v1 memory.limit_in_bytes of /ctr")
    assert "hard 972.8MiB (95% of the share, default)" in the_line(proc, "caps per worker:")


def test_a_limit_out_of_order_is_said_dropped(tmp_path: Path) -> None:
    # A size against a percentage is compared once resolved: an idle limit of 1000MiB
    # above the soft limit (80% of a 1GiB share) is dropped, as each worker drops it.
    env = {**fake_v2(tmp_path, str(2 * GIB)),
           "MEMWARDEN_IDLE_LIMIT": "1000MiB", "MEMWARDEN_MAX_REQUESTS": "500",
           "MEMWARDEN_MAX_REQUESTS_JITTER": "50"}
    proc = check(tmp_path, "-w", "2", env=env)
    caps = the_line(proc, "caps per worker:")
    assert "idle off: 1000MiB is out of order with the others, dropped (environment)" in caps
    assert caps.endswith("; after 500 requests (+0 to 50, drawn per worker)")
    assert warnings(proc) == ["warning: memwarden: idle limit 1048576000 is above the soft "
                              "limit 858993459: idle limit ignored"]
    _, data = check_json(tmp_path, "-w", "2", env={**env, "MEMWARDEN_RECYCLE": "off"})
    assert data["caps"]["soft_limit_bytes"] is None  # recycling off: no cap applies


def test_shed_thresholds_resolve_against_the_limit(tmp_path: Path) -> None:
    env = {**fake_v2(tmp_path, str(4 * GIB)), "MEMWARDEN_SHED_HIGH": "50%",
           "MEMWARDEN_SHED_CGROUP_HIGH": "90%"}
    proc = check(tmp_path, "-w", "4", env=env)
    assert the_line(proc, "shedding:") == (
        "shedding: on: 503 from a worker footprint of 512MiB, serving again below 460.8MiB; "
        "503 from cgroup memory at 90% of the limit (3.6GiB), serving again below 85%")


def test_explicit_sizes_work_without_a_cgroup_limit(tmp_path: Path) -> None:
    env = {**fake_v2(tmp_path, "max"), "MEMWARDEN_SOFT_LIMIT": "1GiB",
           "MEMWARDEN_HARD_LIMIT": "1200MiB"}
    proc = check(tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout
    assert the_line(proc, "memory limit:").endswith(
        "; explicit sizes: MEMWARDEN_SOFT_LIMIT=1GiB, MEMWARDEN_HARD_LIMIT=1.172GiB")
    assert "soft 1GiB (size, environment)" in the_line(proc, "caps per worker:")
    assert "setting MEMWARDEN_SOFT_LIMIT=1GiB (environment)" in lines_of(proc)
    assert "setting MEMWARDEN_IDLE_LIMIT=60% (default)" in lines_of(proc)


def test_every_setting_is_listed_with_its_source(tmp_path: Path) -> None:
    from memwarden.settings import SETTINGS

    env = {**fake_v2(tmp_path, str(GIB)), "MEMWARDEN_PROTECT": "dry-run",
           "MEMWARDEN_CENSUS_EVERY": "50"}
    proc = check(tmp_path, env=env)
    settings = [x for x in lines_of(proc) if x.startswith("setting ")]
    assert [x.split("=")[0].removeprefix("setting ") for x in settings] == [
        s.env for s in SETTINGS]
    assert "setting MEMWARDEN_CENSUS_EVERY=50 (environment)" in settings
    # MEMWARDEN_PROTECT caps each action's own mode: the source says so.
    assert "setting MEMWARDEN_RECYCLE=dry-run (MEMWARDEN_PROTECT=dry-run)" in settings
    assert the_line(proc, "actions:") == (
        "actions: recycle dry-run (MEMWARDEN_PROTECT=dry-run), shed dry-run "
        "(MEMWARDEN_PROTECT=dry-run), pool limits dry-run (MEMWARDEN_PROTECT=dry-run), "
        "orphans dry-run (MEMWARDEN_PROTECT=dry-run)")


def test_observe_only_and_dry_run_are_said_not_failed(tmp_path: Path) -> None:
    """Rollout steps 1 and 2 are choices: the last line says so, and the exit code is 0
    unless a warning stops what dry-run would show."""
    proc = check(tmp_path, "--max-requests", "1000",
                 env={**fake_v2(tmp_path, "max"), "MEMWARDEN_PROTECT": "off"})
    assert proc.returncode == 0 and warnings(proc) == []
    assert lines_of(proc)[-1] == "protection: off, observe only (every action is off), no warnings"
    # Without gunicorn's max_requests nothing restarts a leaking worker: said, not failed.
    proc = check(tmp_path, env={**fake_v2(tmp_path / "m", "max"), "MEMWARDEN_PROTECT": "off"})
    assert proc.returncode == 0
    assert warnings(proc) == [
        "warning: memwarden's recycling is off and gunicorn's max_requests is 0: nothing "
        "restarts a leaking worker; keep gunicorn's max_requests (e.g. 1000, jitter 100) until "
        "memwarden's recycling is on (docs/rollout.md)"]
    env = {**fake_v2(tmp_path / "l", str(GIB)), "MEMWARDEN_PROTECT": "dry-run"}
    proc = check(tmp_path, "--max-requests", "1000", env=env)
    assert proc.returncode == 0
    assert lines_of(proc)[-1] == ("protection: dry-run, nothing acts (actions log would_...), "
                                  "no warnings")
    # Without a limit a dry-run of recycling has nothing to show either.
    proc = check(tmp_path, env={**fake_v2(tmp_path / "n", "max"), "MEMWARDEN_PROTECT": "dry-run"})
    assert proc.returncode == 1
    assert lines_of(proc)[-1] == "protection: NOT effective: recycling by memory"


def test_an_unknown_variable_is_named_with_the_closest_setting(tmp_path: Path) -> None:
    env = {**fake_v2(tmp_path, str(GIB)), "MEMWARDEN_SOFT_LIMT": "1GiB"}
    proc = check(tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout  # a warning, but protection still acts
    assert warnings(proc) == ["warning: memwarden ignores MEMWARDEN_SOFT_LIMT (did you mean "
                              "MEMWARDEN_SOFT_LIMIT?): not a memwarden setting"]
    assert lines_of(proc)[-1] == "protection: effective (1 warning(s) that do not stop it)"


REPLACED = """\
from memwarden.gunicorn_conf import *  # noqa: F403

workers = 2


def post_fork(server, worker):
    print("my own post_fork only")
"""

CALLED = """\
from memwarden.gunicorn_conf import *  # noqa: F403
from memwarden import gunicorn_conf as memwarden_hooks

workers = 2


def post_fork(server, worker):
    memwarden_hooks.post_fork(server, worker)
"""


def test_a_replaced_hook_fails_the_check_naming_the_hook(tmp_path: Path) -> None:
    (tmp_path / "replaced.py").write_text(REPLACED)
    env = fake_v2(tmp_path, str(2 * GIB))
    proc = check(tmp_path, "-c", "replaced.py", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [warning] = warnings(proc)
    assert warning.startswith("warning (makes protective actions carried by post_fork "
                              "ineffective): gunicorn hooks replaced without calling "
                              "memwarden's: post_fork (lost: the worker's probes, recycling")
    assert "my own post_fork" not in proc.stdout  # the config is loaded, the hook not run
    assert "2 worker(s)" in lines_of(proc)[0]

    (tmp_path / "called.py").write_text(CALLED)
    proc = check(tmp_path, "-c", "called.py", env=env)
    assert proc.returncode == 0 and warnings(proc) == [], proc.stdout


def test_settings_a_config_sets_before_memwarden_loads_count(tmp_path: Path) -> None:
    """gunicorn reads memwarden's settings when the config imports memwarden's: what the
    config put in the environment by then counts, as it will in gunicorn."""
    (tmp_path / "conf.py").write_text(
        "import os\n"
        "os.environ.setdefault('MEMWARDEN_RECYCLE', 'dry-run')\n"
        "os.environ.setdefault('MEMWARDEN_SOFT_LIMIT', '12M')\n"
        "from memwarden.gunicorn_conf import *  # noqa: F403\n")
    env = {**fake_v2(tmp_path, str(GIB)), "MEMWARDEN_SOFT_LIMIT": "70%"}
    proc = check(tmp_path, "-c", "conf.py", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "setting MEMWARDEN_RECYCLE=dry-run (environment)" in lines_of(proc)
    assert "setting MEMWARDEN_SOFT_LIMIT=70% (environment)" in lines_of(proc)
    # A bad value the config sets stops gunicorn: exit 2, the variable named.
    proc = check(tmp_path, "-c", "conf.py", env=fake_v2(tmp_path / "b", str(GIB)))
    assert proc.returncode == 2
    assert proc.stderr.startswith("memwarden check: MEMWARDEN_SOFT_LIMIT='12M': 'M' is "
                                  "ambiguous"), proc.stderr
    assert proc.stderr.rstrip().endswith("gunicorn would not start with this config")


def test_a_config_without_memwarden_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("workers = 3\n")
    proc = check(tmp_path, "--config", "plain.py", env=fake_v2(tmp_path, str(2 * GIB)))
    assert proc.returncode == 1
    [warning] = warnings(proc)
    assert warning.startswith("warning (makes every protective action ineffective): the "
                              "gunicorn config calls none of memwarden's hooks")


def test_gunicorn_max_requests_beside_recycling_is_explained(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_text(
        "from memwarden.gunicorn_conf import *  # noqa: F403\nmax_requests = 1000\n")
    env = {**fake_v2(tmp_path, str(2 * GIB)), "MEMWARDEN_MAX_REQUESTS": "5000"}
    proc = check(tmp_path, "-c", "conf.py", env=env)
    assert proc.returncode == 0, proc.stdout
    [warning] = warnings(proc)
    assert warning.startswith("warning: gunicorn max_requests=1000 is set beside memwarden's "
                              "recycling (on): each worker keeps both counts and whichever is "
                              "reached first restarts it")
    assert "at or below MEMWARDEN_MAX_REQUESTS=5000, so memwarden's count never fires" in warning
    assert warning.endswith("use MEMWARDEN_MAX_REQUESTS=5000 instead and set gunicorn's "
                            "max_requests to 0 (docs/rollout.md)")
    # While memwarden's recycling does not act, gunicorn's is the backstop: no warning.
    proc = check(tmp_path, "-c", "conf.py", env={**env, "MEMWARDEN_RECYCLE": "dry-run"})
    assert warnings(proc) == []
    # The command-line option counts as the config's does.
    proc = check(tmp_path, "--max-requests", "200", env=fake_v2(tmp_path / "o", str(GIB)))
    assert [w[:38] for w in warnings(proc)] == ["warning: gunicorn max_requests=200 is "]


def test_gunicorn_cmd_args_count_as_gunicorn_reads_them(tmp_path: Path) -> None:
    """The config file, then GUNICORN_CMD_ARGS, then the options given: gunicorn's order."""
    (tmp_path / "conf.py").write_text(
        "from memwarden.gunicorn_conf import *  # noqa: F403\nworkers = 5\n")
    env = {**fake_v2(tmp_path, str(6 * GIB)),
           "GUNICORN_CMD_ARGS": "-c conf.py --max-requests 700 -w 3"}
    code, data = check_json(tmp_path, env=env)
    assert data["config"] == "conf.py"
    assert data["gunicorn"]["workers"] == 3 and data["gunicorn"]["max_requests"] == 700
    assert data["caps"]["worker_share_bytes"] == 2 * GIB
    assert [w["kind"] for w in data["warnings"]] == ["max_requests"] and code == 0
    _, data = check_json(tmp_path, "-w", "2", env=env)
    assert data["gunicorn"]["workers"] == 2 and data["caps"]["worker_share_bytes"] == 3 * GIB


def test_without_config_it_reads_gunicorn_conf_py_as_gunicorn_would(tmp_path: Path) -> None:
    env = fake_v2(tmp_path, str(2 * GIB))
    assert check_json(tmp_path, env=env)[1]["config"] == "python:memwarden.gunicorn_conf"
    (tmp_path / "gunicorn.conf.py").write_text(
        "from memwarden.gunicorn_conf import *  # noqa: F403\nworkers = 4\n")
    _, data = check_json(tmp_path, env=env)
    assert data["config"] == "gunicorn.conf.py" and data["gunicorn"]["workers"] == 4


def test_loop_tracking_off_under_asyncio_is_a_warning(tmp_path: Path) -> None:
    env = fake_v2(tmp_path, str(GIB))
    proc = check(tmp_path, "-k", "uvicorn_worker.UvicornWorker", env=env)
    assert proc.returncode == 0
    [warning] = warnings(proc)
    assert warning.startswith("warning: MEMWARDEN_LOOP_TRACKING is off while the app uses "
                              "asyncio (worker class uvicorn_worker.UvicornWorker)")
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "__init__.py").write_text("raise SystemExit('never imported')\n")
    (tmp_path / "svc" / "api.py").write_text("import json\nfrom asyncio import gather\n")
    proc = check(tmp_path, "svc.api:app", env=env)
    [warning] = warnings(proc)
    assert "(app module svc.api imports asyncio)" in warning
    proc = check(tmp_path, "svc.api:app", env={**env, "MEMWARDEN_LOOP_TRACKING": "1"})
    assert warnings(proc) == []
    (tmp_path / "sync_app.py").write_text("import json\n")
    assert warnings(check(tmp_path, "sync_app:app", env=env)) == []


def test_exporters_state(tmp_path: Path) -> None:
    env = {**fake_v2(tmp_path, str(GIB)), "MEMWARDEN_PROMETHEUS": "1",
           "MEMWARDEN_PROMETHEUS_PORT": "9555", "MEMWARDEN_OTEL": "1",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "MEMWARDEN_NEWRELIC": "0"}
    proc = check(tmp_path, env=env)
    assert the_line(proc, "exporters:") == (
        "exporters: prometheus on: listener on 127.0.0.1:9555; otel on: OTLP/HTTP to "
        "http://127.0.0.1:4318; newrelic off")


@pytest.mark.parametrize(("args", "env", "message"), [
    (["-c", "missing.py"], {}, "memwarden check: cannot read the gunicorn config missing.py: "
                               "FileNotFoundError: 'missing.py' does not exist"),
    (["-c", "broken.py"], {}, "memwarden check: cannot read the gunicorn config broken.py: "
                              "SyntaxError"),
    (["-c", "python:no_such_module"], {}, "memwarden check: cannot read the gunicorn config "
                                          "python:no_such_module: ModuleNotFoundError"),
    ([], {"MEMWARDEN_SOFT_LIMIT": "12M"}, "memwarden check: MEMWARDEN_SOFT_LIMIT='12M': 'M' is "
                                          "ambiguous"),
    (["-c", "badvalue.py"], {}, "memwarden check: the gunicorn config badvalue.py: invalid "
                                "value for workers"),
    (["--workers", "two"], {}, "usage: memwarden check"),
])
def test_what_cannot_be_checked_exits_2(tmp_path: Path, args: list[str], env: dict[str, str],
                                        message: str) -> None:
    (tmp_path / "broken.py").write_text("workers = (\n")
    (tmp_path / "badvalue.py").write_text("workers = 'many'\n")
    proc = check(tmp_path, *args, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_version_is_the_installed_distributions(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "memwarden.cli", "--version"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout == f"memwarden {importlib.metadata.version('memwarden')}\n"


def test_messages_name_only_extras_that_exist() -> None:
    import re
    import tomllib

    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
                 ["optional-dependencies"])
    named = {(path.relative_to(REPO).as_posix(), m) for base in ("src", "docs")
             for path in (REPO / base).rglob("*") if path.suffix in (".py", ".md")
             for m in re.findall(r"memwarden\[(\w+)\]", path.read_text())}
    assert named and {(p, m) for p, m in named if m not in extras} == set()
