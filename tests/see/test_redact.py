"""What a request carries stays out of lines: the route fallback and the scrub."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden.see.redact import environ_texts, safe_path, safe_target, scope_texts, scrub

TOKEN = "Zq81kLmN0pQrStUv"


def test_word_segments_are_kept_and_id_like_ones_replaced() -> None:
    assert safe_path("/") == "/"
    assert safe_path("") == "/"
    assert safe_path("/api/v1/users/12345/orders") == "/api/v1/users/<var>/orders"
    assert safe_path(f"/reset/{TOKEN}") == "/reset/<var>"
    assert safe_path("/static/app.css") == "/static/app.css"
    assert safe_path("/wp-login.php") == "/wp-login.php"
    assert safe_path("/files/0f8fad5b-d9cb-469f-a165-70867728950e/") == "/files/<var>/"
    assert safe_path("/a/%2e%2e/b") == "/a/<var>/b"
    assert safe_path("/Users/Alice") == "/<var>/<var>"
    assert safe_path("/" + "x" * 33) == "/<var>"
    assert safe_path("/items/7?token=abc") == "/items/<var>"
    assert safe_path("/a/b/c/d/e/f/g/h/i/j/k") == "/a/b/c/d/e/f/g/h/<var>"
    assert safe_target(f"/reset/{TOKEN}?token={TOKEN}") == "/reset/<var>?<redacted>"


@settings(database=None, deadline=None, max_examples=300)
@given(words=st.lists(st.from_regex(r"[a-z]{1,10}", fullmatch=True), max_size=5),
       token=st.from_regex(r"[A-Za-z0-9_-]{12,40}", fullmatch=True).filter(
           lambda t: any(c.isdigit() or c.isupper() for c in t)),
       where=st.integers(0, 5))
def test_a_token_in_any_segment_never_stays_in_the_route(words: list[str], token: str,
                                                         where: int) -> None:
    segments = list(words)
    segments.insert(min(where, len(segments)), token)
    route = safe_path("/" + "/".join(segments))
    assert token not in route
    kept = [s for s in route.split("/")[1:] if s != "<var>"]
    assert all(re.fullmatch(r"[a-z._~-]+|[a-z]{1,3}[0-9]{1,2}", s) for s in kept)


def test_scrub_replaces_the_requests_texts_urls_queries_and_credentials() -> None:
    environ = {"PATH_INFO": f"/fail/{TOKEN}", "QUERY_STRING": f"token={TOKEN}&x=1",
               "RAW_URI": f"/fail/{TOKEN}?token={TOKEN}&x=1",
               "HTTP_COOKIE": f"session={TOKEN}; theme=dark",
               "HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    pairs = environ_texts(environ)
    text = (f"Exception on /fail/{TOKEN} [GET]; value {TOKEN}; "
            f"url http://h:1/fail/{TOKEN}?token={TOKEN}")
    assert TOKEN not in scrub(text, pairs)
    assert scrub(text, pairs).startswith("Exception on /fail/<var> [GET]")
    assert scrub(f"see https://example.test/reset/{TOKEN}?k=v ok") == (
        "see https://example.test/reset/<var>?<redacted> ok")
    assert scrub("/search?q=hunter2 done") == "/search?<redacted> done"
    assert scrub(f"Authorization: Bearer {TOKEN}") == "Authorization: <redacted>"
    assert scrub(f"sent bearer {TOKEN}") == "sent bearer <redacted>"
    assert scrub("Is it ready? Yes.") == "Is it ready? Yes."
    assert scrub("Basic authentication failed: invalid token") == (
        "Basic authentication failed: invalid token")
    assert scrub("Basic dXNlcjpwYXNz") == "Basic <redacted>"
    scope = {"path": f"/items/{TOKEN}", "raw_path": f"/items/{TOKEN}".encode(),
             "query_string": f"a={TOKEN}".encode(),
             "headers": [(b"cookie", f"sid={TOKEN}".encode()),
                         (b"authorization", f"Basic {TOKEN}".encode())]}
    assert TOKEN not in scrub(f"{TOKEN} at /items/{TOKEN}?a={TOKEN}", scope_texts(scope))
