"""Not a leak: GET /report builds a large temporary structure now and then.

It raises the allocator's high-water mark (RSS jumps by tens of MiB and
stays up), but nothing is kept.
"""

from flask import Flask

app = Flask(__name__)


@app.get("/report")
def report() -> dict[str, int]:
    rows = [f"row {i}: " + str(i * 7) for i in range(300_000)]
    return {"rows": len(rows), "chars": sum(map(len, rows))}


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    return {"item": item_id}
