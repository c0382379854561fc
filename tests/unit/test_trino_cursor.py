"""engine.TrinoCursor: one more run after Trino's catalog lost its PostgreSQL connection, and an
unreachable OPA named. The driver's cursor is replaced by one that answers with the errors a
real Trino returned (tests/stack/test_service_failures.py covers the running stack, whose
catalog reconnects by itself)."""

from __future__ import annotations

import pytest
from trino.exceptions import TrinoExternalError, TrinoQueryError

from mesh_assets.engine import PolicyServiceUnreachable, TrinoCursor


def trino_error(message: str) -> TrinoQueryError:
    return TrinoExternalError(
        {"message": message, "errorName": "GENERIC_INTERNAL_ERROR", "errorType": "INTERNAL_ERROR"}
    )


class Answers:
    """A driver cursor whose ``execute`` raises the given errors in turn, then succeeds."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.executed: list[str] = []

    def execute(self, operation, params=None):
        self.executed.append(operation)
        if self.errors:
            raise self.errors.pop(0)

    def fetchall(self):
        return [[1]]


def test_the_catalog_reconnect_error_runs_the_statement_once_more():
    driver = Answers(trino_error("Cannot check and eventually update SQL schema"))
    cursor = TrinoCursor(driver)
    assert cursor.execute("SHOW SCHEMAS FROM iceberg").fetchall() == [[1]]
    assert driver.executed == ["SHOW SCHEMAS FROM iceberg"] * 2


def test_only_once_and_only_that_error():
    twice = Answers(*[trino_error("Cannot check and eventually update SQL schema")] * 2)
    with pytest.raises(TrinoQueryError, match="Cannot check and eventually update SQL schema"):
        TrinoCursor(twice).execute("SELECT 1")
    assert len(twice.executed) == 2
    other = Answers(trino_error("line 1:8: Column 'x' cannot be resolved"))
    with pytest.raises(TrinoQueryError, match="cannot be resolved"):
        TrinoCursor(other).execute("SELECT x")
    assert len(other.executed) == 1


def test_opa_unreachable_names_the_policy_service_and_what_to_do():
    driver = Answers(trino_error("Failed to query OPA backend"))
    with pytest.raises(PolicyServiceUnreachable) as err:
        TrinoCursor(driver, opa_url="http://127.0.0.1:8181").execute("SELECT 1")
    assert str(err.value) == (
        "the policy service (OPA, http://127.0.0.1:8181) is unreachable, and Trino refuses every "
        "query without it (Trino: Failed to query OPA backend). `mesh stack status` shows why; "
        "`mesh stack up` starts it again"
    )
    assert len(driver.executed) == 1
