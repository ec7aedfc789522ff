"""uvicorn's access log under memwarden: no handlers while nothing would write it
(uvicorn then builds no access-log arguments per response), its lines as JSON
when MEMWARDEN_ACCESS_LOG=1 asks for them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import gunicorn

from memwarden.see.uvicorn_access import ACCESS_LOGGER, drop_unwritten_access_log

UVICORN = ["-w", "1", "-k", "uvicorn_worker.UvicornWorker"]


@pytest.fixture
def access() -> Iterator[logging.Logger]:
    logger = logging.getLogger(ACCESS_LOGGER)
    saved = logger.handlers, logger.level, logger.propagate
    try:
        yield logger
    finally:
        logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_handlers_go_while_info_is_dropped_and_the_shared_list_stays(
        access: logging.Logger) -> None:
    # UvicornWorker hands gunicorn.access's own handler list to uvicorn.access.
    shared: list[logging.Handler] = [logging.NullHandler()]
    access.handlers = shared
    access.propagate = False
    access.setLevel(logging.WARNING)
    assert drop_unwritten_access_log()
    assert not access.hasHandlers()
    assert len(shared) == 1  # gunicorn.access keeps its handler


def test_handlers_stay_while_info_is_written(access: logging.Logger) -> None:
    handler = logging.NullHandler()
    access.handlers = [handler]
    access.propagate = False
    access.setLevel(logging.INFO)
    assert not drop_unwritten_access_log()
    assert access.handlers == [handler]


def test_no_access_handlers_in_the_uvicorn_worker_by_default(tmp_path: Path) -> None:
    with gunicorn("asgi_access:app", tmp_path, args=UVICORN) as server:
        assert server.request("GET", "/a")[2] == b"False"
        assert len(server.request_lines(1)) == 1
        assert server.lines(ACCESS_LOGGER) == []


def test_access_lines_when_asked_for(tmp_path: Path) -> None:
    with gunicorn("asgi_access:app", tmp_path, args=UVICORN,
                  env={"MEMWARDEN_ACCESS_LOG": "1"}) as server:
        assert server.request("GET", "/a")[2] == b"True"
        assert len(server.request_lines(1)) == 1
        lines = server.lines(ACCESS_LOGGER)
    assert len(lines) == 1 and "GET /a" in lines[0]["message"]
