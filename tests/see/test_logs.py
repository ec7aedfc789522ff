"""JSON logs: one valid JSON line per record, whatever the record holds."""

from __future__ import annotations

import datetime
import io
import json
import logging
import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import SafeAtoms
from hypothesis import example, given, settings
from hypothesis import strategies as st

from memwarden.see import context
from memwarden.see.logs import ContextFilter, JsonFormatter, gunicorn_logconfig
from memwarden.see.redact import scrub

FUZZ = settings(database=None, deadline=None, max_examples=200)
BASE_KEYS = {"timestamp", "level", "logger", "message"}


def strict_loads(line: str) -> dict[str, Any]:
    """json.loads that also refuses NaN/Infinity, which are not JSON."""
    def reject(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    obj = json.loads(line, parse_constant=reject)
    assert isinstance(obj, dict)
    return obj


def one_line(line: str) -> dict[str, Any]:
    """Exactly one line of pure-ASCII JSON (no raw newline, U+2028, NUL...)."""
    assert line.isascii()
    assert len(line.splitlines()) == 1
    assert "\n" not in line and "\r" not in line and "\x00" not in line
    obj = strict_loads(line)
    assert obj.keys() >= BASE_KEYS
    return obj


def make_record(msg: object, args: Any = (), extra: dict[Any, Any] | None = None,
                exc_info: Any = None, name: str = "app") -> logging.LogRecord:
    return logging.getLogger(name).makeRecord(name, logging.INFO, __file__, 1, msg, args,
                                              exc_info, extra=extra)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("__str__ raised")

    def __repr__(self) -> str:  # hypothesis reprs examples; Hopeless covers both raising
        return "Unprintable()"


class Hopeless:
    def __str__(self) -> str:
        raise RuntimeError("__str__ raised")

    __repr__ = __str__


class Weird:
    def __str__(self) -> str:
        return "weird\n\u2028\x00\ud800"


RESERVED = set(vars(make_record("x"))) | {"message", "asctime"}
nasty_text = st.text(
    alphabet=st.one_of(st.characters(),
                       st.sampled_from("\n\r\x00\u2028\u2029\x85\ud800\udfff\"\\%{}")),
    max_size=200)
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), nasty_text,
    st.binary(max_size=20), st.builds(Unprintable), st.builds(Weird),
    st.just("x" * 100_000),
)
values = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(nasty_text, st.integers(), st.tuples(st.integers())),
                        children, max_size=4),
    ),
    max_leaves=12,
)
# "memwarden" holds memwarden's own prebuilt fields; an app's non-dict value is tested below.
extra_keys = st.one_of(nasty_text.filter(lambda k: k not in RESERVED | {"memwarden"}),
                       st.integers())


@FUZZ
@given(msg=st.one_of(nasty_text, st.builds(Unprintable), st.builds(Weird), values,
                     st.just("y" * 1_000_000)),
       args=st.one_of(st.just(()), st.lists(values, max_size=3).map(tuple)),
       extra=st.dictionaries(extra_keys, values, max_size=4),
       with_exc=st.booleans())
@example(msg="%s %s", args=("only one",), extra={}, with_exc=False)
@example(msg="%d", args=("not a number",), extra={}, with_exc=False)
@example(msg="%(a)s", args=({"a": Unprintable()},), extra={}, with_exc=True)
@example(msg="m", args=(), extra={5: "int key", "level": "forged", "pid": "forged"},
         with_exc=False)
@example(msg="m", args=(), extra={"v": float("nan"), "w": [math.inf]}, with_exc=False)
def test_any_record_formats_as_exactly_one_line_of_valid_json(
        msg: object, args: tuple[Any, ...], extra: dict[Any, Any], with_exc: bool) -> None:
    exc_info = None
    if with_exc:
        try:
            raise ValueError(Weird())
        except ValueError:
            exc_info = sys.exc_info()
    record = make_record(msg, args, extra, exc_info)
    obj = one_line(JsonFormatter().format(record))
    assert obj["level"] == "INFO"  # never replaced by an extra named "level"
    assert obj["logger"] == "app"
    assert isinstance(obj["pid"], int)
    assert len(obj["message"]) <= 16_384 + len("...(truncated)") + 64
    try:
        expected = record.getMessage()
    except Exception:
        expected = None
    if expected is not None and len(expected) <= 16_384 and not obj.get("truncated"):
        # Outside a request only what looks like a query string or a credential
        # is replaced (the scrub's own tests pin which).
        assert obj["message"] == scrub(expected)
    if with_exc:
        assert obj["exc_type"] == "ValueError"
        assert "Traceback" in obj["exc"]


@FUZZ
@given(extra=st.dictionaries(
    nasty_text.filter(lambda k: k not in RESERVED | BASE_KEYS | {"pid", "request_id", "memwarden"}
                      and not k.startswith("_")),
    st.one_of(nasty_text, st.integers(), st.booleans(), st.none()), max_size=5))
@example(extra={"note": "?a=1", "who": "Bearer Zq81kLmN0p"})
def test_plain_extras_are_kept_with_their_values(extra: dict[str, Any]) -> None:
    obj = one_line(JsonFormatter().format(make_record("m", extra=extra)))
    for key, value in extra.items():
        # Text goes through the same scrub as the message; the rest as given.
        assert obj[key] == (scrub(value) if isinstance(value, str) else value)


def test_circular_extras_keep_the_line_and_its_other_fields() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    token = context._set_request(context.RequestId("req-circular"))
    try:
        line = JsonFormatter().format(make_record("m", extra={"loop": loop, "ok": 1}))
    finally:
        context._reset_request(token)
    obj = one_line(line)
    assert obj["request_id"] == "req-circular"
    assert obj["ok"] == 1
    assert isinstance(obj["pid"], int)
    assert obj["loop"] == "{'self': {...}}"


def test_values_whose_str_and_repr_both_raise_keep_the_line() -> None:
    loop: dict[Any, Any] = {"h": Hopeless()}
    loop["self"] = loop
    record = make_record(Hopeless(), (), extra={"h": Hopeless(), "loop": loop,
                                                 (1, 2): "tuple key", "ok": 3})
    obj = one_line(JsonFormatter().format(record))
    assert obj["ok"] == 3
    assert obj["h"] == "<unprintable Hopeless>"
    assert obj["loop"] == "<unprintable dict>"


def test_too_deeply_nested_extras_keep_the_line() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    obj = one_line(JsonFormatter().format(make_record("m", extra={"deep": deep, "ok": 2})))
    assert obj["ok"] == 2
    assert isinstance(obj["deep"], str)


def test_non_finite_floats_become_strings_not_bare_nan() -> None:
    obj = one_line(JsonFormatter().format(make_record(
        "m", extra={"nan": float("nan"), "inf": math.inf, "fine": 1.5})))
    assert (obj["nan"], obj["inf"], obj["fine"]) == ("nan", "inf", 1.5)


def test_a_message_whose_str_raises_still_gives_a_line() -> None:
    obj = one_line(JsonFormatter().format(make_record(Unprintable())))
    assert "unprintable Unprintable" in obj["message"]


def test_an_apps_own_memwarden_extra_is_not_taken_for_prebuilt_fields() -> None:
    obj = one_line(JsonFormatter().format(make_record("m", extra={"memwarden": "v1.2"})))
    assert obj["message"] == "m" and isinstance(obj["pid"], int)


def test_extras_cannot_replace_the_standard_fields() -> None:
    obj = one_line(JsonFormatter().format(make_record(
        "m", extra={"timestamp": "t", "level": "l", "logger": "g", "pid": "p"})))
    assert obj["level"] == "INFO" and obj["logger"] == "app"
    assert isinstance(obj["pid"], int) and obj["timestamp"] != "t"


def test_huge_messages_are_truncated() -> None:
    line = JsonFormatter().format(make_record("z" * 1_000_000))
    obj = one_line(line)
    assert len(line) + 1 <= 4096
    assert obj["message"].endswith("...(truncated)") and obj["truncated"] is True
    assert obj["message"].startswith("z" * 3500)


@FUZZ
@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_timestamp_is_iso_utc_with_milliseconds(created: float) -> None:
    record = make_record("m")
    record.created = created
    obj = one_line(JsonFormatter().format(record))
    second = int(created)
    expected = datetime.datetime.fromtimestamp(second, datetime.UTC)
    millis = int((created - second) * 1000)
    assert obj["timestamp"] == expected.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def test_memwarden_records_carry_their_prebuilt_fields() -> None:
    record = make_record("request", name="memwarden.request")
    record.memwarden = {"request_id": "r1", "pid": 7, "seq": 3, "route": "/chat"}
    obj = one_line(JsonFormatter().format(record))
    assert obj == {**obj, "message": "request", "request_id": "r1", "pid": 7, "seq": 3,
                   "route": "/chat"}


def test_memwarden_action_records_carry_the_request_they_happened_in() -> None:
    """A refusal or a shed request logged during a request names it; a request
    line keeps its own id; outside a request there is none."""
    def action() -> dict[str, Any]:
        record = make_record("pool_refuse", name="memwarden.pool")
        record.memwarden = {"pid": 7, "pool": "things"}
        return one_line(JsonFormatter().format(record))

    assert "request_id" not in action()
    token = context._set_request(context.RequestId("req-7"))
    try:
        line = action()
        record = make_record("request", name="memwarden.request")
        record.memwarden = {"request_id": "r1", "pid": 7}
        request_line = one_line(JsonFormatter().format(record))
    finally:
        context._reset_request(token)
    assert line["request_id"] == "req-7" and line["pool"] == "things" and line["pid"] == 7
    assert list(line)[4] == "request_id"  # after the message, as on every line
    assert request_line["request_id"] == "r1"


@pytest.fixture
def app_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A real logger writing through JsonFormatter into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test_logs.app")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_app_records_logged_during_a_request_carry_its_request_id(
        app_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = app_logger
    logger.info("before")
    token = context._set_request(context.RequestId("req-42"))
    try:
        logger.info("during %s", "work", extra={"user_field": 1})
        try:
            raise KeyError("boom")
        except KeyError:
            logger.exception("failed")
    finally:
        context._reset_request(token)
    logger.info("after")
    lines = [one_line(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["before", "during work", "failed", "after"]
    assert [line.get("request_id") for line in lines] == [None, "req-42", "req-42", None]
    assert lines[1]["user_field"] == 1
    assert lines[2]["exc_type"] == "KeyError"


def test_context_filter_puts_the_request_id_on_records() -> None:
    record = make_record("m")
    token = context._set_request(context.RequestId("req-7"))
    try:
        assert ContextFilter().filter(record) is True
    finally:
        context._reset_request(token)
    assert record.request_id == "req-7"
    kept = make_record("m", extra={"request_id": "explicit"})
    assert ContextFilter().filter(kept) and kept.request_id == "explicit"


SECRETS = ("token=SECRET", "SECRET", "session=COOKIE", "Bearer TOKEN")


def gunicorn_atoms() -> SafeAtoms:
    """The atoms gunicorn's Logger.access builds, header and environ atoms included."""
    atoms = {
        "h": "10.0.0.1", "l": "-", "u": "-", "t": "[28/Nov/2026:01:02:03 +0000]",
        "r": "GET /search?q=1&token=SECRET HTTP/1.1", "s": "200", "m": "GET",
        "U": "/search", "q": "q=1&token=SECRET", "H": "HTTP/1.1", "b": "512", "B": 512,
        "f": "https://example.com/?token=SECRET", "a": "curl/8", "T": 0, "D": 12345,
        "M": 12, "L": "0.012345", "p": "<4121>",
        "{cookie}i": "session=COOKIE", "{authorization}i": "Bearer TOKEN",
        "{set-cookie}o": "session=COOKIE", "{query_string}e": "q=1&token=SECRET",
        "{raw_uri}e": "/search?q=1&token=SECRET",
    }
    return SafeAtoms(atoms)


def test_gunicorn_access_records_carry_no_query_string_headers_or_cookies() -> None:
    fmt = Config().access_log_format + ' "%({cookie}i)s" %(q)s'
    record = make_record(fmt, (gunicorn_atoms(),), name="gunicorn.access")
    assert "token=SECRET" in record.getMessage()  # gunicorn's own text would leak it
    line = JsonFormatter().format(record)
    for secret in SECRETS:
        assert secret not in line
    obj = one_line(line)
    assert obj["message"] == "access"
    assert (obj["method"], obj["path"], obj["status"], obj["bytes"], obj["duration_ms"]) == (
        "GET", "/search", "200", 512, 12.345)


def test_gunicorn_access_record_without_a_response_size_omits_bytes() -> None:
    atoms = gunicorn_atoms()
    atoms["B"] = None
    atoms["b"] = "-"
    obj = one_line(JsonFormatter().format(
        make_record("%(r)s", (atoms,), name="gunicorn.access")))
    assert "bytes" not in obj and "SECRET" not in json.dumps(obj)


def test_gunicorn_logconfig_passes_dict_config_and_gunicorn_logs_json(tmp_path: Any) -> None:
    """Run gunicorn's real Logger with our logconfig_dict in a fresh interpreter."""
    script = textwrap.dedent("""
        import datetime, logging, types
        from gunicorn.config import Config
        from gunicorn.glogging import Logger
        from memwarden.see import context
        from memwarden.see.logs import gunicorn_logconfig

        cfg = Config()
        cfg.set("logconfig_dict", gunicorn_logconfig("INFO", access_log=True))
        log = Logger(cfg)
        log.info("worker booted")
        environ = {"REQUEST_METHOD": "POST", "RAW_URI": "/chat?token=SECRET",
                   "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/chat",
                   "QUERY_STRING": "token=SECRET", "REMOTE_ADDR": "127.0.0.1",
                   "HTTP_COOKIE": "session=COOKIE"}
        req = types.SimpleNamespace(headers=[("COOKIE", "session=COOKIE"),
                                             ("AUTHORIZATION", "Bearer TOKEN")])
        resp = types.SimpleNamespace(status="201 Created", sent=17, headers=[])
        token = context._set_request(context.RequestId("req-9"))
        log.access(resp, req, environ, datetime.timedelta(microseconds=2500))
        logging.getLogger("memwarden.request").info("request")
        logging.getLogger("myapp").warning("app %s", "line")
        context._reset_request(token)
        quiet = Config()
        quiet.set("logconfig_dict", gunicorn_logconfig("INFO"))
        Logger(quiet).access(resp, req, environ, datetime.timedelta(microseconds=1))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = [one_line(line) for line in done.stderr.splitlines()]
    for secret in SECRETS:
        assert secret not in done.stderr
    by_logger = {line["logger"]: line for line in lines}
    assert [line["logger"] for line in lines] == [
        "gunicorn.error", "gunicorn.access", "memwarden.request", "myapp"]
    assert by_logger["gunicorn.error"]["message"] == "worker booted"
    access = by_logger["gunicorn.access"]
    assert (access["method"], access["path"], access["status"], access["bytes"],
            access["duration_ms"], access["request_id"]) == (
        "POST", "/chat", "201", 17, 2.5, "req-9")
    assert by_logger["myapp"]["message"] == "app line"
    assert by_logger["myapp"]["request_id"] == "req-9"


def test_gunicorn_logconfig_levels_follow_the_arguments() -> None:
    config = gunicorn_logconfig("DEBUG", access_log=False)
    assert config["root"]["level"] == "DEBUG"
    assert config["loggers"]["gunicorn.error"]["level"] == "DEBUG"
    assert config["loggers"]["gunicorn.access"]["level"] == "WARNING"
    assert gunicorn_logconfig("INFO", access_log=True)["loggers"]["gunicorn.access"][
        "level"] == "INFO"


def test_a_megabyte_exception_message_is_one_line_within_pipe_buf() -> None:
    """Longer than PIPE_BUF, a line could interleave with another worker's on a
    shared pipe: it is cut to 4096 bytes with its newline, and says so."""
    try:
        raise RuntimeError("\u00e9x" * 500_000)
    except RuntimeError:
        exc_info = sys.exc_info()
    token = context._set_request(context.RequestId("req-long"))
    try:
        line = JsonFormatter().format(make_record("m" * 20_000, extra={"big": ["y"] * 50_000},
                                                  exc_info=exc_info))
    finally:
        context._reset_request(token)
    assert "\n" not in line and len(line.encode()) + 1 <= 4096
    obj = json.loads(line)
    assert obj["truncated"] is True
    assert obj["request_id"] == "req-long" and obj["exc_type"] == "RuntimeError"
    assert obj["level"] == "INFO" and obj["logger"] == "app" and isinstance(obj["pid"], int)
    assert obj["exc"].endswith("...(truncated)") and "Traceback" in obj["exc"]


def test_the_servers_own_lines_carry_no_request_target_or_echoed_bytes() -> None:
    secret = "Zq81kLmN0pQrStUv"
    fmt = JsonFormatter().format
    cases = [
        (make_record("Error handling request %s %s", ("GET", f"/reset/{secret}?t={secret}"),
                     name="gunicorn.error"), "Error handling request GET /reset/<var>?<redacted>"),
        (make_record("%s - \"%s %s HTTP/%s\" %d",
                     ("127.0.0.1:5", "GET", f"/items/{secret}?k={secret}", "1.1", 200),
                     name="uvicorn.access"),
         "127.0.0.1:5 - \"GET /items/<var>?<redacted> HTTP/1.1\" 200"),
        (make_record(f"Invalid request from ip=1.2.3.4: Invalid HTTP request line: "
                     f"'GET /a b?t={secret} HTTP/1.1'", name="gunicorn.error"),
         "Invalid request from ip=1.2.3.4: Invalid HTTP request line: <redacted>"),
        (make_record(f"Invalid request from ip=1.2.3.4: Invalid HTTP Header: 'X{secret}\\x01'",
                     name="gunicorn.error"),
         "Invalid request from ip=1.2.3.4: Invalid HTTP Header: <redacted>"),
        (make_record("Invalid request from ip=1.2.3.4: Invalid HTTP Header: 'X-REQUEST-ID'",
                     name="gunicorn.error"),
         "Invalid request from ip=1.2.3.4: Invalid HTTP Header: 'X-REQUEST-ID'"),
        (make_record("Invalid request from ip=1.2.3.4: Request Line is too large (8192 > 4094)",
                     name="gunicorn.error"),
         "Invalid request from ip=1.2.3.4: Request Line is too large (8192 > 4094)"),
    ]
    for record, expected in cases:
        assert json.loads(fmt(record))["message"] == expected
    access = make_record("%(h)s", ({"m": "GET", "U": f"/reset/{secret}", "q": f"t={secret}",
                                   "s": "200", "B": 2},), name="gunicorn.access")
    obj = json.loads(fmt(access))
    assert obj["path"] == "/reset/<var>" and secret not in json.dumps(obj)
