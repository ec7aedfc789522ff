"""Leak: POST /orders keeps every failure's exception (and its traceback's frames).

Only the error path leaks: half of the orders fail validation with a 500.
"""

from flask import Flask

app = Flask(__name__)
_failures: list[BaseException] = []


@app.post("/orders/<int:order_id>")
def order(order_id: int) -> dict[str, int]:
    try:
        if order_id % 2 == 0:
            raise ValueError(f"order {order_id} failed validation")
        return {"order": order_id}
    except ValueError as exc:
        _failures.append(exc)  # kept "to report later": its traceback holds the frames
        raise


@app.get("/orders/<int:order_id>")
def show(order_id: int) -> dict[str, int]:
    return {"order": order_id}
