"""A bare WSGI app (no framework routes it) for the secrets and header-list tests."""

# One list for every response, as some apps keep their headers.
SHARED_HEADERS = [("Content-Type", "text/plain")]


def app(environ, start_response):  # type: ignore[no-untyped-def]
    path = environ["PATH_INFO"]
    if path == "/shared-headers":
        start_response("200 OK", SHARED_HEADERS)
        return [str(len(SHARED_HEADERS)).encode()]
    if path == "/huge-error":
        raise RuntimeError("\u00e9" * 1_000_000)
    if path.startswith("/raise"):
        # The full URI in the message: gunicorn logs it with the traceback.
        uri = environ.get("RAW_URI", path)
        raise RuntimeError(f"cannot serve {uri} (query {environ.get('QUERY_STRING')})")
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(body)).encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
