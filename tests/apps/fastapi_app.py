"""A small FastAPI app for the integration tests."""

import logging

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

app = FastAPI()
app_log = logging.getLogger("fastapi_app")


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    app_log.info("looking up item")
    return {"item": item_id}


@app.get("/boom")
async def boom() -> dict[str, str]:
    raise RuntimeError("the app failed")


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(5):
            yield f"chunk {i}\n".encode()
    return StreamingResponse(chunks(), media_type="text/plain")
