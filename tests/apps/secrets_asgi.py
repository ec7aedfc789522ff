"""A FastAPI app for the secrets tests: a path variable, routes that raise, a POST."""

import logging

from fastapi import FastAPI, Request

app = FastAPI()
app_log = logging.getLogger("secrets_asgi")


@app.get("/items/{item_id}")
async def item(item_id: str) -> dict[str, int]:
    app_log.info("looking up an item")
    return {"length": len(item_id)}


@app.get("/fail/{token}")
async def fail(token: str, request: Request) -> dict[str, str]:
    raise RuntimeError(f"lookup failed for {request.url}")


@app.post("/submit")
async def submit(request: Request) -> dict[str, int]:
    return {"received": len(await request.body())}


@app.post("/submit-fail")
async def submit_fail(request: Request) -> dict[str, int]:
    await request.body()
    raise ValueError("could not store the submission")
