"""memwarden's gunicorn logger: no access-log entry is built while gunicorn.access
drops them, and the access log still works when asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import gunicorn

LOGGER = "memwarden.see.gunicorn_log.Logger"

# In a child: gunicorn's Logger sets up logging for the whole process.
ASK = """
import json, sys
from gunicorn.config import Config
from gunicorn import glogging
from memwarden.see.gunicorn_log import Logger
from memwarden.see.logs import gunicorn_logconfig
out = {}
for access in (False, True):
    cfg = Config()
    cfg.set("logconfig_dict", gunicorn_logconfig("INFO", access))
    out[str(access)] = [glogging.Logger(cfg).access_log_enabled, Logger(cfg).access_log_enabled]
cfg = Config()
cfg.set("logconfig_dict", gunicorn_logconfig("INFO", False))
log = Logger(cfg)
log.access_log.setLevel("INFO")  # raised later: seen at once
out["raised"] = log.access_log_enabled
cfg = Config()  # no logconfig, no accesslog: gunicorn's own answer, off
out["plain"] = Logger(cfg).access_log_enabled
print(json.dumps(out))
"""


def test_access_log_is_off_while_gunicorn_access_drops_records() -> None:
    done = subprocess.run([sys.executable, "-c", ASK], capture_output=True, text=True,
                          timeout=60, check=True)
    out = json.loads(done.stdout.splitlines()[-1])
    # gunicorn's own Logger builds the entry either way; this one only when it is written.
    assert out["False"] == [True, False]
    assert out["True"] == [True, True]
    assert out["raised"] is True
    assert out["plain"] is False


def test_under_gunicorn_request_lines_stay_and_access_lines_follow_the_setting(
        tmp_path: Path) -> None:
    # memwarden.gunicorn_conf names the logger class: no --logger-class needed.
    from memwarden import gunicorn_conf
    assert gunicorn_conf.logger_class == LOGGER
    for access in ("0", "1"):
        with gunicorn("flask_app:app", tmp_path, args=["-w", "1"],
                      env={"MEMWARDEN_ACCESS_LOG": access}) as server:
            for i in range(5):
                status, _, _ = server.request("GET", f"/items/{i}")
                assert status == 200
            assert len(server.request_lines(5)) == 5
            access_lines = server.lines("gunicorn.access")
        assert len(access_lines) == (5 if access == "1" else 0)
        if access == "1":
            # Ids in paths are redacted as in every line.
            assert {line["path"] for line in access_lines} == {"/items/<var>"}
