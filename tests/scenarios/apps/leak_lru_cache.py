"""Leak: an unbounded lru_cache keyed by a value that never repeats (an item id)."""

import functools

from flask import Flask

app = Flask(__name__)


@functools.cache
def render(item_id: int) -> dict[str, object]:
    return {"id": item_id, "title": f"Item {item_id}",
            "tags": [f"tag-{item_id}-{k}" for k in range(20)]}


@app.get("/render/<int:item_id>")
def page(item_id: int) -> dict[str, object]:
    return render(item_id)


@app.get("/search")
def search() -> dict[str, list[int]]:
    return {"results": list(range(10))}
