"""Not a leak: a clean FastAPI app on uvicorn workers, several users at once."""

import asyncio

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Message(BaseModel):
    message: str


@app.post("/chat")
async def chat(body: Message) -> dict[str, object]:
    await asyncio.sleep(0)
    words = [f"{w}-{i}" for i, w in enumerate(body.message.split() * 50)]
    return {"reply": " ".join(words[:5]), "words": len(words)}


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, object]:
    return {"item": item_id, "related": [item_id + k for k in range(20)]}
