"""The apps of the recall benchmark, generated from one template per server kind.

Every app has three routes: ``GET /items/<id>`` (45% of the traffic), ``POST
/chat`` (30%) and ``GET /work/<n>`` (25%), where the family under test does
its work. A leak family keeps about ``SIZE`` bytes of payload per call of
``/work`` (on top of what the kept thing itself costs: a thread, a handler,
a task); a trap does what fools memory tests without leaking. Sizes, seeds
and the trap's bounds come from the environment, so one generated file
serves every run of a kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["KINDS", "ROUTES", "Kind", "write_app"]

# ~100-byte strings (a 51-character str is 100 bytes on 64-bit CPython): the
# records, tokens and rows that pile up in real apps.
_COMMON = '''
import os
import random

SIZE = int(os.environ.get("BENCH_SIZE", "0"))
PARAM = int(os.environ.get("BENCH_PARAM", "0"))
SEED = int(os.environ.get("BENCH_SEED", "0"))
_calls = 0


def payload(size, tag=0):
    return [f"{tag:012d}:{i:08d}:" + "x" * 29 for i in range(max(1, round(size / 100)))]


def item_body(item_id):
    return {"item": item_id, "related": [item_id + k for k in range(10)]}


def chat_body(message):
    words = [f"{message}-{i}" for i in range(random.randint(50, 400))]
    return {"words": len(words), "chars": sum(map(len, words))}
'''

WSGI_TEMPLATE = _COMMON + '''
from flask import Flask, request

app = Flask(__name__)
@SETUP@


@app.get("/items/<int:item_id>")
def items(item_id):
    return item_body(item_id)


@app.post("/chat")
def chat():
    body = request.get_json(silent=True) or {}
    return chat_body(body.get("message", ""))


@app.get("/work/<int:n>")
def work(n):
    global _calls
    _calls += 1
@BODY@
    return {"ok": True, "calls": _calls}
'''

ASGI_TEMPLATE = _COMMON + '''
import asyncio

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

@SETUP@


async def items(request):
    return JSONResponse(item_body(int(request.path_params["item_id"])))


async def chat(request):
    body = await request.json()
    return JSONResponse(chat_body(body.get("message", "")))


async def work(request):
    global _calls
    _calls += 1
    n = int(request.path_params["n"])
@BODY@
    return JSONResponse({"ok": True, "calls": _calls})


app = Starlette(routes=[Route("/items/{item_id:int}", items),
                        Route("/chat", chat, methods=["POST"]),
                        Route("/work/{n:int}", work)])
'''


@dataclass(frozen=True)
class Kind:
    name: str
    leak: bool
    setup: str
    body: str
    asgi: bool = False


def _indent(code: str) -> str:
    return "\n".join("    " + line if line else line for line in code.strip("\n").splitlines())


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    # -- leaks --------------------------------------------------------------
    Kind("dict_objects", True, "_kept = {}", "_kept[_calls] = payload(SIZE, n)"),
    Kind("closures", True, '''
_registry = []


def _make(data):
    return lambda: len(data)
''', "_registry.append(_make(payload(SIZE, n)))"),
    Kind("logging_handlers", True, '''
import logging

_log = logging.getLogger("bench.work")
_log.propagate = False
_log.setLevel(logging.CRITICAL + 10)
''', '''
handler = logging.StreamHandler()
handler.context = payload(SIZE, n)
_log.addHandler(handler)
_log.debug("work %s", n)
'''),
    Kind("asyncio_tasks", True, '''
_never = None


async def _wait_forever(data):
    await _never.wait()
    return len(data)
''', '''
global _never
if _never is None:
    _never = asyncio.Event()
asyncio.get_running_loop().create_task(_wait_forever(payload(SIZE, n)))
''', asgi=True),
    Kind("threads", True, '''
import threading

_park = threading.Event()


def _hold(data):
    _park.wait()
    return len(data)
''', '''
threading.Thread(target=_hold, args=(payload(SIZE, n),), daemon=True).start()
'''),
    Kind("fds", True, "_files = []", '_files.append((open(os.devnull, "rb"), payload(SIZE, n)))'),
    Kind("large_buffers", True, "_buffers = []", "_buffers.append(bytearray(SIZE))"),
    # -- traps: no leak -------------------------------------------------------
    # A cache over PARAM keys: it fills ever more slowly, then stops.
    Kind("bounded_cache", False, "_cache = {}", '''
key = n % PARAM
if key not in _cache:
    _cache[key] = payload(SIZE, key)
'''),
    # The last PARAM results kept: grows to its bound, then churns.
    Kind("bounded_deque", False, '''
from collections import deque

_recent = deque(maxlen=PARAM)
''', "_recent.append(payload(SIZE, n))"),
    # Two rare features first used late (at call PARAM and 2 x PARAM of the
    # route): each imports its modules then, once.
    Kind("lazy_imports", False, '''
import importlib

_LATE = {0: ("xml.dom.minidom", "email.mime.multipart", "decimal", "http.cookies"),
         1: ("difflib", "csv", "statistics", "ipaddress")}
''', '''
feature = 0 if _calls >= PARAM and n % 2 else 1 if _calls >= 2 * PARAM else None
if feature is not None:
    for name in _LATE[feature]:
        importlib.import_module(name)
'''),
    # A rare report that builds PARAM thousand rows and lets them go.
    Kind("large_temporary", False, "", '''
if n % 25 == 0:
    rows = [f"row {i}: {i * 7}" for i in range(PARAM * 1000)]
    del rows
'''),
    # Sessions of users who come and go, the oldest evicted past PARAM.
    Kind("session_store", False, '''
from collections import OrderedDict

from flask import request as _request, make_response as _make_response

_sessions = OrderedDict()
''', '''
sid = _request.cookies.get("sid") or f"s{SEED}-{_calls}-{n}"
_sessions[sid] = payload(SIZE, n)
_sessions.move_to_end(sid)
while len(_sessions) > PARAM:
    _sessions.popitem(last=False)
response = _make_response({"ok": True, "sessions": len(_sessions)})
response.set_cookie("sid", sid)
return response
'''),
)}

# The routes file of every run: /work gets 25% of the traffic.
ROUTES = {"routes": [
    {"method": "GET", "path": "/items/{rand}", "weight": 0.45},
    {"method": "POST", "path": "/chat", "json": {"message": "hello {rand}"}, "weight": 0.30},
    {"method": "GET", "path": "/work/{rand}", "weight": 0.25},
]}


def write_app(kind: Kind, directory: Path) -> str:
    """Write ``kind``'s app into ``directory``; its gunicorn name (``module:app``)."""
    template = ASGI_TEMPLATE if kind.asgi else WSGI_TEMPLATE
    module = f"recall_{kind.name}"
    source = template.replace("@SETUP@", kind.setup.strip("\n"))
    source = source.replace("@BODY@", _indent(kind.body))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(source, encoding="utf-8")
    return f"{module}:app"
