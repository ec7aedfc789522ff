"""Keeping what clients send out of log lines: query strings, tokens in paths,
cookies, credentials.

Three sources of such text reach a line. The route of an app that no
framework routes falls back to its path, with the segments that look like
ids or tokens replaced (:func:`safe_path`). The request being handled is
known to the formatter (its path, query string, cookies and credentials,
from the environ or scope), so any of them quoted in a message or traceback
is replaced exactly. And the server's own lines (gunicorn's "Error handling
request", uvicorn's access line) carry the request target as an argument,
sometimes after the request has ended: the targets of the last few failed
requests are kept for those.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PLACEHOLDER", "REDACTED", "environ_texts", "remember_failure", "safe_path",
           "safe_target", "scope_texts", "scrub"]

PLACEHOLDER = "<var>"
REDACTED = "<redacted>"

# A segment kept as it is: lowercase words (with . _ ~ -), as in /api/users,
# /static/app.css, /wp-login.php; or a short version-like token (v1, api2).
# Anything else (digits, mixed case, long, percent-encoded) may be an id or
# a token, and becomes the placeholder.
_KEPT_SEGMENT = re.compile(r"[a-z._~-]{0,31}[a-z][a-z._~-]{0,31}|[a-z]{1,3}[0-9]{1,2}")
_MAX_WORD = 32
_MAX_SEGMENTS = 8
# Pieces shorter than this are not replaced wherever they occur in a line:
# too likely to be ordinary words or numbers, too short to be a credential.
_MIN_PIECE = 6
_FAILURES: deque[tuple[tuple[str, str], ...]] = deque(maxlen=8)

_URL = re.compile(r"\b((?:https?|wss?)://[^\s\"'<>/?#]*)([^\s\"'<>?#]*)(\?[^\s\"'<>#]*)?")
# A '?' starting something that holds '=' before the next space: a query string.
_QUERY = re.compile(r"\?(?=[^\s\"'<>]*=)[^\s\"'<>]+")
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic|digest)(\s+)([A-Za-z0-9._~+/=-]{8,})")
_HEADER = re.compile(r"(?i)\b(cookie|authorization|set-cookie|x-api-key)(\"?'?\s*[:=]\s*)"
                     r"[^\r\n\"']+")


def safe_path(path: str) -> str:
    """The path with id-like or token-like segments replaced, without its query."""
    path = path.split("?", 1)[0]
    if len(path) <= 1:
        return path or "/"
    parts = path.split("/")
    out = [p if not p or (len(p) <= _MAX_WORD and _KEPT_SEGMENT.fullmatch(p)) else PLACEHOLDER
           for p in parts[:_MAX_SEGMENTS + 1]]
    if len(parts) > _MAX_SEGMENTS + 1:
        out.append(PLACEHOLDER)
    return "/".join(out)


def safe_target(target: str) -> str:
    """A request target (path and query) as it can be logged."""
    path, sep, _ = target.partition("?")
    return safe_path(path) + (f"?{REDACTED}" if sep else "")


def _pieces(raw: str, safe: str, pairs: list[tuple[str, str]]) -> None:
    if len(raw) >= _MIN_PIECE and raw != safe:
        pairs.append((raw, safe))


def _path_pairs(path: str, pairs: list[tuple[str, str]]) -> None:
    safe = safe_path(path)
    if safe == path:
        return
    _pieces(path, safe, pairs)
    for segment in path.split("/"):
        if segment and safe_path("/" + segment) != "/" + segment:
            _pieces(segment, PLACEHOLDER, pairs)


def _query_pairs(query: str, pairs: list[tuple[str, str]]) -> None:
    if not query:
        return
    _pieces(query, REDACTED, pairs)
    for item in query.split("&"):
        _pieces(item.partition("=")[2], REDACTED, pairs)


def _header_pairs(name: str, value: str, pairs: list[tuple[str, str]]) -> None:
    _pieces(value, REDACTED, pairs)
    if name == "cookie":
        for item in value.split(";"):
            _pieces(item.partition("=")[2].strip(), REDACTED, pairs)
    else:  # "Bearer xyz": the credential alone may be quoted too
        _pieces(value.partition(" ")[2].strip(), REDACTED, pairs)


def _sorted(pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    # Longest first: the whole path before the segments inside it.
    return tuple(sorted(set(pairs), key=lambda pair: -len(pair[0])))


def environ_texts(environ: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(raw, replacement) for what a WSGI request carries that must not be logged."""
    pairs: list[tuple[str, str]] = []
    path = environ.get("PATH_INFO")
    if isinstance(path, str):
        _path_pairs(path, pairs)
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw_uri, str):
        raw_path, _, raw_query = raw_uri.partition("?")
        _path_pairs(raw_path, pairs)
        _query_pairs(raw_query, pairs)
    query = environ.get("QUERY_STRING")
    if isinstance(query, str):
        _query_pairs(query, pairs)
    for key, name in (("HTTP_COOKIE", "cookie"), ("HTTP_AUTHORIZATION", "authorization")):
        value = environ.get(key)
        if isinstance(value, str):
            _header_pairs(name, value, pairs)
    return _sorted(pairs)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


def scope_texts(scope: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(raw, replacement) for what an ASGI request carries that must not be logged."""
    pairs: list[tuple[str, str]] = []
    for key in ("path", "raw_path"):
        path = _text(scope.get(key))
        if path is not None:
            _path_pairs(path, pairs)
    query = _text(scope.get("query_string"))
    if query is not None:
        _query_pairs(query, pairs)
    for name, value in scope.get("headers") or ():
        if name in (b"cookie", b"authorization"):
            text = _text(value)
            if text is not None:
                _header_pairs(name.decode("latin-1"), text, pairs)
    return _sorted(pairs)


def remember_failure(request: Any) -> None:
    """Keep a failed request's texts (its ``private_texts()``) for the server's
    lines written after it ended. Never raises: it runs as a request closes."""
    try:
        pairs = request.private_texts()
    except Exception:
        return
    if pairs:
        _FAILURES.append(pairs)


def _url(match: re.Match[str]) -> str:
    query = f"?{REDACTED}" if match.group(3) else ""
    return f"{match.group(1)}{safe_path(match.group(2)) if match.group(2) else ''}{query}"


def _credential(match: re.Match[str]) -> str:
    # A plain word after "Basic" is prose ("Basic authentication failed"); a
    # credential has digits, base64 punctuation or mixed case.
    word = match.group(3)
    if word.isalpha() and (word.islower() or word.isupper() or word.istitle()):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


def scrub(text: str, pairs: Iterable[tuple[str, str]] = ()) -> str:
    """``text`` without the given raw texts, query strings, URLs' tokens or credentials."""
    for raw, safe in pairs:
        if raw in text:
            text = text.replace(raw, safe)
    for failed in tuple(_FAILURES):
        for raw, safe in failed:
            if raw in text:
                text = text.replace(raw, safe)
    if "://" in text:
        text = _URL.sub(_url, text)
    if "?" in text:
        text = _QUERY.sub(f"?{REDACTED}", text)
    text = _CREDENTIAL.sub(_credential, text)
    return _HEADER.sub(rf"\1\2{REDACTED}", text)
