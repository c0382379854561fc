"""The verdict of one rule, the same whether SQL or Great Expectations computed it.

Percentages and ``mostly`` follow Great Expectations 1.x exactly (see
``tests/unit/test_quality_conformance.py``); metadata values are plain Python a person can read.
What leaves the quality layer (event metadata, reports, the console) goes through
:meth:`RuleResult.masked`: a value of a column the contract does not classify ``public`` is
shown by its classification and length only, as ingestion errors show it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mesh_assets.contract.model import Column, DataProduct, QualityRule
from mesh_assets.ingest.readers import mask

SAMPLE_SIZE = 5


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleResult:
    rule: QualityRule
    passed: bool
    observed_value: Any = None
    element_count: int = 0
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample: tuple = ()
    error: str | None = None
    engine: str = "sql"  # "sql:<dialect>" pushdown, or "great_expectations" fallback
    details: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "errored" if self.error else ("passed" if self.passed else "failed")

    def masked(self, product: DataProduct) -> RuleResult:
        """This result as it may be shown outside the run, when the rule judges a column of
        ``product`` classified other than ``public``: each unexpected value of such a column,
        an observed value that is not the count of unexpected rows (a min, max, mean, a most
        common value) and Great Expectations' details become ``<classification: n chars>``."""
        by_name = {c.name: c for c in product.columns}
        columns = [by_name.get(name) for name in self.rule.columns]
        hidden = [c for c in columns if c is not None and c.classification != "public"]
        if not hidden:
            return self
        observed = self.observed_value
        counts_rows = isinstance(observed, int) and observed == self.unexpected_count
        details = {k: mask(hidden[0], v) if k.startswith("gx/") else v for k, v in self.details.items()}
        return dataclasses.replace(
            self,
            sample=tuple(_masked_sample(columns, hidden[0], v) for v in self.sample),
            observed_value=observed if counts_rows else _masked_value(hidden[0], observed),
            details=details,
        )

    def metadata(self) -> dict[str, Any]:
        """Plain Python values a person can read (no numpy scalars, no NaN); values as computed,
        so what is shown outside the run is ``masked(product).metadata()``."""
        md: dict[str, Any] = {
            "expectation": self.rule.expectation,
            "kwargs": _plain(self.rule.kwargs),
            "severity": self.rule.severity,
            "engine": self.engine,
            "element_count": self.element_count,
        }
        if self.observed_value is not None:
            md["observed_value"] = _plain(self.observed_value)
        if self.unexpected_count is not None:
            md["unexpected_count"] = self.unexpected_count
            if self.unexpected_percent is not None:
                md["unexpected_percent"] = round(self.unexpected_percent, 4)
        if self.sample:
            md["unexpected_sample"] = [str(_plain(v)) for v in self.sample]
        for key, value in self.details.items():
            md[key] = _plain(value)
        md["status"] = self.status
        if self.error:
            md["error"] = self.error
        return md


def _masked_value(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [mask(column, v) for v in value]
    return mask(column, value)


def _masked_sample(columns: list[Column | None], hidden: Column, value: Any) -> Any:
    """One unexpected value (a tuple of the rule's columns' values for a multi-column rule)."""
    if isinstance(value, tuple) and len(value) == len(columns):
        return tuple(
            v if c is not None and c.classification == "public" else mask(c or hidden, v)
            for c, v in zip(columns, value)
        )
    return mask(hidden, value)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def map_success(total: int, considered: int, unexpected: int, mostly: float) -> bool:
    """GX 1.x ``_mostly_success`` with its vacuous truth on no rows (or no non-null rows)."""
    if total == 0 or considered == 0:
        return True
    return (float(considered) - float(unexpected)) / float(considered) >= mostly


def map_percent(total: int, nonnull: int | None, unexpected: int) -> float | None:
    """GX 1.x ``unexpected_percent``: over the non-null rows (over all rows for not-null)."""
    if total <= 0:
        return None
    if nonnull is None:
        return unexpected / total * 100
    return unexpected / nonnull * 100 if nonnull > 0 else None
