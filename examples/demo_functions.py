"""Custom column functions used by the example configs."""


def price_band(row: dict) -> str:
    """'budget', 'mid' or 'premium' from the row's price."""
    price = row["price"]
    if price < 30:
        return "budget"
    return "mid" if price < 150 else "premium"
