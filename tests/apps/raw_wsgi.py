"""A bare WSGI app whose exceptions reach the server (no framework catches them)."""


def app(environ, start_response):  # type: ignore[no-untyped-def]
    if environ["PATH_INFO"] == "/raise":
        raise RuntimeError("raised before the response started")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
