"""A bare ASGI app (no framework routes it)."""

# One start message, one header list, for every response, as some apps keep them.
SHARED_HEADERS = [(b"content-type", b"text/plain")]
SHARED_START = {"type": "http.response.start", "status": 200, "headers": SHARED_HEADERS}


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    if scope["path"].startswith("/raise"):
        raise RuntimeError(f"cannot serve {scope['path']}?{scope['query_string'].decode()}")
    if scope["path"] == "/shared-headers":
        await send(SHARED_START)
        body = f"{len(SHARED_HEADERS)} {len(SHARED_START['headers'])}".encode()
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
