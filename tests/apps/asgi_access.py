"""A bare ASGI app that answers whether uvicorn's access logger has handlers in
this worker: what uvicorn asks, per connection, before it builds the access
log's arguments for every response."""

import logging


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = str(logging.getLogger("uvicorn.access").hasHandlers()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
