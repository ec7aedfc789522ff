"""A bare ASGI app (no framework routes it)."""


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    if scope["path"].startswith("/raise"):
        raise RuntimeError(f"cannot serve {scope['path']}?{scope['query_string'].decode()}")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
