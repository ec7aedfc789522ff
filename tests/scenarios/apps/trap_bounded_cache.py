"""Not a leak: a price cache over a bounded key space (24 products) fills, then stops."""

from flask import Flask

app = Flask(__name__)
_prices: dict[int, dict[str, object]] = {}


def _quote(product: int) -> dict[str, object]:
    return {"product": product, "tiers": [float(product * 10 + k) for k in range(30)],
            "label": f"product {product}"}


@app.get("/price/<int:item_id>")
def price(item_id: int) -> dict[str, object]:
    product = item_id % 24
    if product not in _prices:
        _prices[product] = _quote(product)
    return _prices[product]


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    return {"item": item_id}
