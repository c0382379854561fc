"""The quality vocabulary: which expectations exist, which the SQL compiler evaluates (with which
kwargs), the platform's own (freshness, referential integrity), and those of the installed
Great Expectations (from the generated :mod:`mesh_assets.contract.gx_catalog`)."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

from mesh_assets.contract import gx_catalog
from mesh_assets.contract.model import QualityRule, parse_duration

if TYPE_CHECKING:
    pass

# expectation type -> (short check name, required kwargs). Pushdown-compiled, DuckDB and Trino.
EXPECTATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "expect_column_values_to_not_be_null": ("not_null", ("column",)),
    "expect_column_values_to_be_between": ("between", ("column",)),
    "expect_column_values_to_be_in_set": ("in_set", ("column", "value_set")),
    "expect_column_values_to_match_regex": ("match_regex", ("column", "regex")),
    "expect_column_values_to_be_unique": ("unique", ("column",)),
    "expect_compound_columns_to_be_unique": ("compound_unique", ("column_list",)),
    "expect_table_row_count_to_be_between": ("row_count_between", ()),
    "expect_column_mean_to_be_between": ("mean_between", ("column",)),
    "expect_column_min_to_be_between": ("min_between", ("column",)),
    "expect_column_max_to_be_between": ("max_between", ("column",)),
    # platform expectations (GX has no core equivalent; see mesh_assets/quality/gx.py for how
    # they map onto GX suites)
    "expect_column_values_to_be_fresh": ("fresh", ("column", "max_age")),
    "expect_column_values_to_be_in_other_product": ("in_product", ("column", "product", "key")),
    "expect_table_row_count_to_not_shrink": ("not_shrunk", ("max_shrink_percent",)),
}
SHRINK = "expect_table_row_count_to_not_shrink"
PLATFORM_EXPECTATIONS = {
    # expectation -> kwargs it accepts
    "expect_column_values_to_be_fresh": {"column", "max_age"},
    "expect_column_values_to_be_in_other_product": {"column", "product", "key", "mostly"},
    # at most max_shrink_percent fewer rows than main; the check adds main_rows (main's count)
    SHRINK: {"max_shrink_percent"},
}
_BOUNDS = {"min_value", "max_value", "strict_min", "strict_max"}
# kwargs the compiler implements; a rule with any other kwarg (row_condition, say) runs in GX
PUSHDOWN_KWARGS: dict[str, set[str]] = {
    "expect_column_values_to_not_be_null": {"column", "mostly"},
    "expect_column_values_to_be_between": {"column", "mostly"} | _BOUNDS,
    "expect_column_values_to_be_in_set": {"column", "value_set", "mostly"},
    "expect_column_values_to_match_regex": {"column", "regex", "mostly"},
    "expect_column_values_to_be_unique": {"column", "mostly"},
    "expect_compound_columns_to_be_unique": {"column_list", "mostly", "ignore_row_if"},
    "expect_table_row_count_to_be_between": set(_BOUNDS),
    "expect_column_mean_to_be_between": {"column"} | _BOUNDS,
    "expect_column_min_to_be_between": {"column"} | _BOUNDS,
    "expect_column_max_to_be_between": {"column"} | _BOUNDS,
    **PLATFORM_EXPECTATIONS,
    SHRINK: {"max_shrink_percent", "main_rows"},
}


def is_pushdown(rule: QualityRule) -> bool:
    """True when the SQL compiler evaluates ``rule`` (else Great Expectations does)."""
    allowed = PUSHDOWN_KWARGS.get(rule.expectation)
    return allowed is not None and set(rule.kwargs) <= allowed


_ROW = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_match_regex",
}
_DUP = {"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"}
_REF = {"expect_column_values_to_be_in_other_product"}
_AGG = {
    "expect_table_row_count_to_be_between": None,
    "expect_column_mean_to_be_between": "avg",
    "expect_column_min_to_be_between": "min",
    "expect_column_max_to_be_between": "max",
    "expect_column_values_to_be_fresh": "max",
    SHRINK: None,
}


def kind_of(expectation: str) -> str | None:
    """``row``, ``dup``, ``ref`` or ``agg`` for pushdown expectations, None for the others."""
    if expectation in _ROW:
        return "row"
    if expectation in _DUP:
        return "dup"
    if expectation in _REF:
        return "ref"
    if expectation in _AGG:
        return "agg"
    return None


def max_age(kwargs: dict) -> dt.timedelta:
    """``max_age`` of a freshness rule: ``{hours: 24}`` (timedelta keywords) or ``"24h"``."""
    value = kwargs["max_age"]
    if isinstance(value, dict):
        return dt.timedelta(**{k: float(v) for k, v in value.items()})
    return parse_duration(value)


def min_rows(kwargs: dict) -> int | None:
    """The fewest rows a shrink rule accepts: main's row count less ``max_shrink_percent``
    (None when main has no rows to compare with)."""
    main = kwargs.get("main_rows")
    if not main:
        return None
    return math.ceil(main * (100 - float(kwargs["max_shrink_percent"])) / 100 - 1e-9)


# core expectations GX cannot run on pandas (SQL-only metrics or a second data source)
NOT_ON_PANDAS = {
    "expect_column_values_to_match_like_pattern": "LIKE patterns exist only for SQL data sources",
    "expect_column_values_to_match_like_pattern_list": "LIKE patterns exist only for SQL data sources",
    "expect_column_values_to_not_match_like_pattern": "LIKE patterns exist only for SQL data sources",
    "expect_column_values_to_not_match_like_pattern_list": "LIKE patterns exist only for SQL data sources",
    "expect_query_results_to_match_comparison": "runs SQL against a second data source",
    "expect_table_row_count_to_equal_other_table": "needs another table of a SQL data source",
    "unexpected_rows_expectation": "runs a SQL query against a SQL data source",
}


def gx_kwargs(expectation: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(required, optional) kwargs of a GX core expectation, without importing GX."""

    return gx_catalog.EXPECTATIONS.get(expectation)


def gx_version() -> str:

    return gx_catalog.GX_VERSION
