"""Pool limits in a real gunicorn worker, per MEMWARDEN_POOL_LIMITS.

One worker with threads, so that two requests meet at a pool of one
resource: the holder keeps it, the taker waits 0.3 s for it. ``on`` refuses
the taker (503, ``pool_refuse``); ``dry-run`` logs ``would_pool_refuse``
with the same figures and lends it a second resource; ``off`` lends it one
without a word. The action line carries the taker's request id and the
worker's pid; the census counts it under the mode's own name; the master's
``hold`` line names the mode.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from support import Gunicorn, gunicorn, wait_for

GTHREAD = ["-w", "1", "-k", "gthread", "--threads", "4"]


def _line(server: Gunicorn, request_id: str) -> dict[str, Any]:
    found = [x for x in server.request_lines(4) if x.get("request_id") == request_id]
    assert len(found) == 1, (request_id, found)
    return found[0]


@pytest.mark.parametrize("mode", ["on", "dry-run", "off"])
def test_pool_limits_act_in_a_gunicorn_worker(tmp_path: Path, mode: str) -> None:
    flag = tmp_path / "held"
    env = {"MEMWARDEN_POOL_LIMITS": mode, "MEMWARDEN_CENSUS_EVERY": "1"}
    with gunicorn("pool_app:app", tmp_path, args=GTHREAD, env=env) as server:
        held: list[tuple[int, dict[str, str], bytes]] = []
        holder = threading.Thread(target=lambda: held.append(server.request(
            "GET", f"/hold?s=2&flag={flag}", headers={"X-Request-ID": "holder"})))
        holder.start()
        # The holder has the pool's one resource.
        wait_for(flag.exists, timeout=15, what=str(flag))
        status, headers, body = server.request("GET", "/take?timeout=0.3",
                                               headers={"X-Request-ID": "taker"})
        holder.join(30)
        assert held and held[0][0] == 200
        # Once the holder gave it back, the one resource serves the next taker.
        after = server.request("GET", "/take?timeout=5", headers={"X-Request-ID": "after"})
        assert after[0] == 200 and json.loads(after[2])["resource"] == 1
        taker, last = _line(server, "taker"), _line(server, "after")
        refusals = server.lines("memwarden.pool", "pool_refuse")
        would = server.lines("memwarden.pool", "would_pool_refuse")
        [hold] = server.lines("memwarden.recycle", "hold")

    assert headers["x-request-id"] == "taker" and hold["pool_limits"] == mode
    census = taker["census"]
    expected = {"pool": "things", "size": 1, "max_size": 1, "in_use": 1, "idle": 0,
                "waiting": 1, "timeout_s": 0.3, "request_id": "taker", "pid": taker["pid"]}
    if mode == "on":
        assert status == 503 and taker["status"] == 503
        assert len(refusals) == 1 and not would
        assert {k: refusals[0].get(k) for k in expected} == expected
        assert census["pool.things.refused"] == 1 and "pool.things.would_refuse" not in census
    elif mode == "dry-run":
        assert status == 200 and json.loads(body)["resource"] == 2  # lent beyond max_size
        assert len(would) == 1 and not refusals
        assert {k: would[0].get(k) for k in expected} == expected
        assert census["pool.things.would_refuse"] == 1 and "pool.things.refused" not in census
    else:
        assert status == 200 and json.loads(body)["resource"] == 2
        assert not refusals and not would
        assert "pool.things.refused" not in census and "pool.things.would_refuse" not in census
    # The loan beyond max_size is closed on release in dry-run: back to the bound.
    expected_size = 2 if mode == "off" else 1
    assert last["census"]["pool.things.size"] == expected_size
