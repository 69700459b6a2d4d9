"""Build shop.duckdb, the database the text-to-SQL example's queries run against.

    python build_db.py            # writes shop.duckdb next to this file (replacing it)

Three small tables: customers, products and orders. The validator opens the file read-only, so
nothing a generated query does is kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

SCHEMA = """\
CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR, city VARCHAR, joined DATE);
CREATE TABLE products (id INTEGER PRIMARY KEY, name VARCHAR, category VARCHAR, price DECIMAL(8, 2));
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, product_id INTEGER,
                     quantity INTEGER, ordered_at DATE);
"""

CUSTOMERS = [(1, "Ada Moss", "Leeds", "2024-01-15"), (2, "Ben Ortiz", "Bristol", "2024-03-02"),
             (3, "Chloe Park", "Leeds", "2024-06-20"), (4, "Dev Rana", "York", "2025-01-08"),
             (5, "Eva Lind", "Bristol", "2025-02-11"), (6, "Femi Adeyemi", "London", "2025-04-30")]
PRODUCTS = [(1, "Garden hose", "garden", 24.50), (2, "Seed tray", "garden", 6.00),
            (3, "Desk lamp", "home", 39.90), (4, "Kettle", "home", 29.00),
            (5, "Puzzle 1000", "toys", 15.75), (6, "Board game", "toys", 34.00)]
ORDERS = [(1, 1, 1, 1, "2025-01-03"), (2, 1, 2, 4, "2025-01-03"), (3, 2, 3, 1, "2025-01-17"),
          (4, 3, 5, 2, "2025-02-01"), (5, 3, 6, 1, "2025-02-14"), (6, 4, 4, 1, "2025-03-09"),
          (7, 5, 1, 2, "2025-03-21"), (8, 5, 2, 10, "2025-04-02"), (9, 6, 3, 1, "2025-04-18"),
          (10, 2, 4, 1, "2025-05-05"), (11, 1, 6, 1, "2025-05-22"), (12, 4, 5, 3, "2025-06-10")]


def build(path: Path) -> Path:
    """Write the database to ``path`` (an existing file is replaced) and return the path."""
    import duckdb

    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as db:
        db.execute(SCHEMA)
        db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", CUSTOMERS)
        db.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", PRODUCTS)
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", ORDERS)
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("shop.duckdb")
    print(f"wrote {build(target)}")
