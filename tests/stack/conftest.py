"""Fixtures of the interop tests: the running stack (``mesh stack up``; ``make test`` starts it).

The tests fail, never skip, when the stack is down: a skipped interop test would let CI pass
without checking anything. Each test works in its own namespace (``stack_test_<random>``),
dropped afterwards through Trino (which also deletes the files), so the mesh's own schemas are
never touched.
"""

from __future__ import annotations

import uuid

import pytest

from mesh_assets import stack
from mesh_assets.stack.trino import Trino


@pytest.fixture(scope="session")
def iceberg_catalog(stack_layout):
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog(stack_layout.catalog_name, **stack.catalog_properties(stack_layout))


@pytest.fixture(scope="session")
def trino(stack_layout):
    conn = Trino(stack_layout).connect(request_timeout=120)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def trino_sql(trino):
    """``trino_sql("SELECT ...")`` -> all rows, as lists."""

    def run(sql: str) -> list[list]:
        cur = trino.cursor()
        cur.execute(sql)
        return cur.fetchall()

    return run


@pytest.fixture
def namespace(iceberg_catalog, trino_sql):
    name = f"stack_test_{uuid.uuid4().hex[:10]}"
    iceberg_catalog.create_namespace(name)
    yield name
    for identifier in iceberg_catalog.list_tables(name):
        trino_sql(f'DROP TABLE IF EXISTS iceberg."{name}"."{identifier[-1]}"')
    iceberg_catalog.drop_namespace(name)
