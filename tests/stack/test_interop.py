"""pyiceberg, Trino and DuckDB read and write the same Iceberg tables on the stack.

Every comparison is against values computed independently on the other side (pyarrow compute,
DuckDB SQL), column by column, plus full row equality where the table is small.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mesh_assets import engine

pytestmark = pytest.mark.stack

ROWS = 20_000


def sample_table(rows: int, seed: int = 7) -> pa.Table:
    """Every type the mesh's contracts use, with nulls in the optional columns."""
    rng = random.Random(seed)

    def maybe(value):
        return None if rng.random() < 0.05 else value

    start = dt.datetime(2024, 1, 1)
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "qty": pa.array([maybe(rng.randint(-1000, 1000)) for _ in range(rows)], pa.int32()),
            "amount": pa.array([maybe(rng.uniform(-1e6, 1e6)) for _ in range(rows)], pa.float64()),
            "price": pa.array(
                [maybe(decimal.Decimal(rng.randint(0, 10**8)) / 100) for _ in range(rows)],
                pa.decimal128(12, 2),
            ),
            "name": pa.array([maybe(f"n{rng.randint(0, 500)}-é") for _ in range(rows)], pa.string()),
            "flag": pa.array([maybe(rng.random() < 0.3) for _ in range(rows)], pa.bool_()),
            "day": pa.array(
                [maybe(dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 700))) for _ in range(rows)],
                pa.date32(),
            ),
            "ts": pa.array(
                [
                    maybe(
                        start
                        + dt.timedelta(seconds=rng.randint(0, 10**8), microseconds=rng.randint(0, 999_999))
                    )
                    for _ in range(rows)
                ],
                pa.timestamp("us"),
            ),
        }
    )


def arrow_profile(table: pa.Table) -> dict:
    """Per column: non-null count, min, max, and sum (numbers) or total length (strings) or
    true count (booleans), computed by pyarrow."""
    out = {"rows": table.num_rows}
    for name in table.column_names:
        col = table[name]
        mm = pc.min_max(col).as_py()
        out[name] = {"count": pc.count(col).as_py(), "min": mm["min"], "max": mm["max"]}
        if pa.types.is_boolean(col.type):
            out[name]["sum"] = pc.sum(pc.cast(col, pa.int64())).as_py()
        elif pa.types.is_string(col.type):
            out[name]["sum"] = pc.sum(pc.utf8_length(col)).as_py()
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
            out[name]["sum"] = pc.sum(col).as_py()
    return out


def sql_profile(run, relation: str, table: pa.Table) -> dict:
    """The same profile computed by an SQL engine over ``relation``."""
    exprs = ["count(*)"]
    layout = []
    for name in table.column_names:
        col = table[name]
        c = f'"{name}"'
        parts = [f"count({c})", f"min({c})", f"max({c})"]
        if pa.types.is_boolean(col.type):
            parts = [f"count({c})", f"bool_and({c})", f"bool_or({c})", f"count_if({c})"]
        elif pa.types.is_string(col.type):
            parts.append(f"sum(length({c}))")
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
            parts.append(f"sum({c})")
        layout.append((name, len(parts)))
        exprs += parts
    row = run(f"SELECT {', '.join(exprs)} FROM {relation}")
    out, i = {"rows": row[0]}, 1
    for name, n in layout:
        vals = row[i : i + n]
        i += n
        out[name] = {"count": vals[0], "min": vals[1], "max": vals[2]}
        if n == 4:
            out[name]["sum"] = vals[3]
    return out


def assert_profiles_equal(got: dict, expected: dict, engine_name: str) -> None:
    assert got["rows"] == expected["rows"], f"{engine_name}: row count"
    for name, stats in expected.items():
        if name == "rows":
            continue
        for key, want in stats.items():
            have = got[name][key]
            if isinstance(want, float) and want is not None:
                assert have is not None and math.isclose(float(have), want, rel_tol=1e-9, abs_tol=1e-6), (
                    f"{engine_name}: {name}.{key} = {have}, pyarrow says {want}"
                )
            elif isinstance(want, decimal.Decimal):
                assert decimal.Decimal(have) == want, (
                    f"{engine_name}: {name}.{key} = {have}, pyarrow says {want}"
                )
            else:
                assert have == want, f"{engine_name}: {name}.{key} = {have!r}, pyarrow says {want!r}"


def trino_profile(trino_sql, relation: str, table: pa.Table) -> dict:
    return sql_profile(lambda sql: trino_sql(sql)[0], relation, table)


def duckdb_profile(con, relation: str, table: pa.Table) -> dict:
    return sql_profile(lambda sql: list(con.execute(sql).fetchone()), relation, table)


def test_pyiceberg_writes_and_trino_reads_the_same_rows(iceberg_catalog, trino_sql, namespace):
    data = sample_table(ROWS)
    table = iceberg_catalog.create_table(f"{namespace}.sample", data.schema)
    table.append(data.slice(0, ROWS // 2))
    table.append(data.slice(ROWS // 2))  # two commits, two data files

    expected = arrow_profile(data)
    assert_profiles_equal(trino_profile(trino_sql, f'iceberg."{namespace}".sample', data), expected, "Trino")

    # row by row: Trino returns exactly what was written, types included
    got = trino_sql(f'SELECT * FROM iceberg."{namespace}".sample ORDER BY id')
    want = [list(r.values()) for r in data.sort_by("id").to_pylist()]
    assert len(got) == len(want) == ROWS
    assert got == want


def test_trino_writes_and_pyiceberg_and_duckdb_read_it(iceberg_catalog, trino_sql, namespace):
    rel = f'iceberg."{namespace}".orders'
    trino_sql(f"""
        CREATE TABLE {rel} WITH (partitioning = ARRAY['month(order_date)']) AS
        SELECT CAST(x AS bigint) AS id,
               CAST(x % 97 AS integer) AS customer,
               CAST(x AS double) * 0.25 AS amount,
               CAST(CAST(x AS decimal(12, 2)) / 100 AS decimal(12, 2)) AS price,
               'c' || CAST(x % 11 AS varchar) AS channel,
               date_add('day', x % 400, DATE '2024-01-01') AS order_date
        FROM UNNEST(sequence(1, 5000)) AS t(x)""")
    trino_sql(f"""
        INSERT INTO {rel}
        SELECT CAST(x AS bigint), CAST(x % 97 AS integer), CAST(x AS double) * 0.25,
               CAST(CAST(x AS decimal(12, 2)) / 100 AS decimal(12, 2)), 'c' || CAST(x % 11 AS varchar),
               date_add('day', x % 400, DATE '2024-01-01')
        FROM UNNEST(sequence(5001, 8000)) AS t(x)""")
    trino_sql(f"INSERT INTO {rel} VALUES (9001, NULL, NULL, NULL, NULL, DATE '2025-06-30')")
    # a row-level delete: Trino writes delete files, which the readers must apply
    trino_sql(f"DELETE FROM {rel} WHERE id % 10 = 0")

    (count,) = trino_sql(f"SELECT count(*) FROM {rel}")[0]
    assert count == 8000 - 800 + 1

    table = iceberg_catalog.load_table(f"{namespace}.orders")
    arrow = table.scan().to_arrow()
    assert arrow.num_rows == count
    expected = arrow_profile(arrow)
    assert_profiles_equal(trino_profile(trino_sql, rel, arrow), expected, "Trino vs pyiceberg")

    con = engine.connect()
    view = engine.register_table(con, table, "orders")
    assert_profiles_equal(duckdb_profile(con, view, arrow), expected, "DuckDB vs pyiceberg")
    # and independently of pyarrow: DuckDB's numbers are Trino's
    by_channel_trino = trino_sql(
        f"SELECT channel, count(*), sum(amount) FROM {rel} GROUP BY channel ORDER BY channel NULLS FIRST"
    )
    by_channel_duck = con.execute(
        f"SELECT channel, count(*), sum(amount) FROM {view} GROUP BY channel ORDER BY channel NULLS FIRST"
    ).fetchall()
    assert [(c, n) for c, n, _ in by_channel_trino] == [(c, n) for c, n, _ in by_channel_duck]
    for (_, _, a), (_, _, b) in zip(by_channel_trino, by_channel_duck, strict=True):
        assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-12)


def test_time_travel_matches_between_trino_and_pyiceberg(iceberg_catalog, trino_sql, namespace):
    data = sample_table(3000, seed=11).select(["id", "qty", "name", "day"])
    table = iceberg_catalog.create_table(f"{namespace}.history", data.schema)
    table.append(data.slice(0, 1000))
    table.append(data.slice(1000, 1000))
    table = table.refresh()
    table.delete("id < 100")  # pyiceberg delete
    rel = f'iceberg."{namespace}".history'
    trino_sql(f"INSERT INTO {rel} VALUES (50000, 1, 'from-trino', DATE '2030-01-01')")
    trino_sql(f"DELETE FROM {rel} WHERE id BETWEEN 100 AND 149")  # Trino delete
    table = table.refresh()

    snapshots = [s.snapshot_id for s in table.snapshots()]
    assert len(snapshots) >= 5
    counts = []
    for snapshot_id in snapshots:
        via_pyiceberg = table.scan(snapshot_id=snapshot_id).to_arrow().sort_by("id")
        via_trino = trino_sql(f"SELECT * FROM {rel} FOR VERSION AS OF {snapshot_id} ORDER BY id")
        assert via_trino == [list(r.values()) for r in via_pyiceberg.to_pylist()], (
            f"snapshot {snapshot_id} differs"
        )
        counts.append(via_pyiceberg.num_rows)
    assert counts[:2] == [1000, 2000] and counts[-1] == 2000 - 100 + 1 - 50
