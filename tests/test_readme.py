"""The README stays true: its settings table is the settings table, and its Quick
start runs as written, top to bottom."""

import importlib.metadata
import os
import re
import shlex
import subprocess
from pathlib import Path

from support import VENV_BIN, gunicorn

from memwarden.settings import settings_doc

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_table_matches_the_code() -> None:
    """Regenerate with settings_doc() when a setting changes."""
    text = README.read_text()
    start = text.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == settings_doc().strip()


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join(README.read_text().splitlines()[:12])
    assert "make demo" in head and "make test" in head


# -- the Quick start, run top to bottom ------------------------------------------------------

FLASK_APP = """\
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return {"ok": True}
"""

FASTAPI_APP = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def index():
    return {"ok": True}
"""


def quick_start() -> str:
    text = README.read_text()
    start = text.index("## Quick start")
    return text[start:text.index("\n## ", start + 1)]


def blocks() -> list[tuple[str, str]]:
    """The Quick start's fenced blocks, in order: (language, body)."""
    return re.findall(r"```(\w*)\n(.*?)```", quick_start(), re.S)


def commands(body: str) -> list[list[str]]:
    return [shlex.split(line.split("#")[0]) for line in body.splitlines() if line.strip()]


def limited_sys(tmp: Path, limit: str) -> dict[str, str]:
    """A /sys whose cgroup v2 root has memory.max ``limit``: the process's own cgroup path
    resolves up to it (and no v1 memory controller is mounted in it)."""
    root = tmp / f"sys-{limit}" / "fs" / "cgroup"
    root.mkdir(parents=True)
    (root / "memory.current").write_text("104857600\n")
    (root / "memory.max").write_text(f"{limit}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMWARDEN_", "GUNICORN_"))}
    return {**env, "MEMWARDEN_SYS_ROOT": str(root.parents[1])}


def run_check(tokens: list[str], tmp: Path, env: dict[str, str]
              ) -> subprocess.CompletedProcess[str]:
    assert tokens[:2] == ["memwarden", "check"], tokens
    return subprocess.run([str(VENV_BIN / "memwarden"), *tokens[1:]], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=60)


def serve(tokens: list[str], tmp: Path, env: dict[str, str]) -> list[dict[str, object]]:
    """Start gunicorn as the command says (bound to a free local port), request /,
    and return the log lines once the request line is written."""
    assert tokens[0] == "gunicorn" and tokens[1] == "-c", tokens
    with gunicorn(tokens[-1], tmp, config=tokens[2], args=tokens[3:-1], env=env,
                  cwd=tmp) as server:
        status, _, _ = server.request("GET", "/")
        assert status == 200
        assert server.request_lines(1), server.log_path.read_text()[-3000:]
        return server.lines()


def test_quick_start_runs_top_to_bottom(tmp_path: Path) -> None:
    """Install, check, run (WSGI and ASGI), a config of one's own, the app wrapped by hand."""
    assert "pip install -e ." in quick_start()
    assert importlib.metadata.version("memwarden")  # installed, as the first step says
    (tmp_path / "app.py").write_text(FLASK_APP)
    (tmp_path / "main.py").write_text(FASTAPI_APP)
    env = limited_sys(tmp_path, str(2 * 2**30))
    found = blocks()
    assert [lang for lang, _ in found] == ["", "", "python", "python"]

    # The check, as written: exit 0 under a limit; 1 where there is none.
    [check] = commands(found[0][1])
    proc = run_check(check, tmp_path, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "protection: effective, no warnings"
    assert run_check(check, tmp_path, limited_sys(tmp_path, "max")).returncode == 1

    # gunicorn with memwarden's config, WSGI then ASGI: requests are measured, and the
    # master logged the check's summary.
    for tokens in commands(found[1][1]):
        lines = serve(tokens, tmp_path, env)
        assert [x for x in lines if x.get("logger") == "memwarden.request"]
        assert [x["message"] for x in lines if x.get("logger") == "memwarden.check"][-1]\
            .startswith("protection: effective")

    # A config of one's own that calls memwarden's hooks: nothing to warn about.
    body = found[2][1]
    assert body.startswith("# gunicorn.conf.py\n")
    (tmp_path / "gunicorn.conf.py").write_text(body)
    proc = run_check(["memwarden", "check", "-c", "gunicorn.conf.py", "app:app"], tmp_path, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "protection: effective, no warnings"
    lines = serve(["gunicorn", "-c", "gunicorn.conf.py", "app:app"], tmp_path, env)
    assert not [x for x in lines if x.get("level") == "WARNING"]

    # Or wrap the app by hand: the WSGI half, then the ASGI half.
    from flask import Flask

    from memwarden.asgi import AsgiMemoryTracker
    from memwarden.wsgi import MemoryTracker

    wsgi_part, asgi_part = found[3][1].split("\n\n")
    flask_app = Flask("quick_start")
    exec(wsgi_part, {"app": flask_app})
    assert isinstance(flask_app.wsgi_app, MemoryTracker)
    namespace: dict[str, object] = {"app": object()}
    exec(asgi_part, namespace)
    assert isinstance(namespace["app"], AsgiMemoryTracker)
