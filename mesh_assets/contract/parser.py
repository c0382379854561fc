"""Data contracts: one Open Data Contract Standard (ODCS v3) YAML file per data product.

A contract is the single source of truth of its product. From it the platform derives the
Iceberg schema (:mod:`mesh_assets.iceberg.catalog`), the Dagster asset spec (:mod:`mesh_assets.definitions`)
and the quality checks (:mod:`mesh_assets.quality.checks`).

Platform-specific settings live under the contract's ``customProperties``:

``source``      ingestion products: ``{format: csv, file: <name in the landing folder>,
                demoData: <package>:<resource path>, settleSeconds: 5, timezone: UTC}``;
                ``file`` is relative to the domain's landing folder and stays inside it;
                ``settleSeconds`` (default 5): a file is complete once unchanged that long
                (or at once when ``<file>.done`` exists); ``timezone``: the IANA zone of
                timestamps written without an offset (without it, such a value in a
                timestamptz column is refused)
``maxShrinkPercent``  full-refresh ingested products: the largest drop of the row count from
                main that a new version may bring (default 50; the check blocks publication)
                A streaming product reads a Kafka topic instead: ``{format: kafka, topic: <name>,
                key: <column the message key carries>, valueFormat: json|avro, mode: append|upsert,
                maxRecords: 10000, maxSeconds: 5}`` (:class:`~mesh_assets.contract.model.StreamSource`;
                ``mode: upsert`` needs ``key`` to be the one-column primary key)
``transform``   ``dbt`` for products computed by a dbt model of the same name
``dagsterPartitions``  Dagster partitions mapped to Iceberg rows (:mod:`mesh_assets.contract.partitions`)
``quarantine``  ``true``: rows that break the contract go to ``<product>__quarantine`` with the
                reason, instead of failing the whole write
``retention``   how long old snapshots are kept (``7d``, ``12h``; default 7 days)
``visibility``  output port: ``public`` (default; other domains may depend on it) or
                ``internal`` (only its own domain may)

Access (enforced by Trino through OPA and by the local read path, :mod:`mesh_assets.access`):
the ODCS top-level ``roles`` name the groups that may read the product (``access: read``); a
role's customProperties ``rowFilter`` (an SQL predicate over the product's columns: the rows
that role sees) and ``clearance`` (classifications it sees in clear: ``pii``,
``confidential``). Each column's ``classification`` (public, internal, confidential, pii)
decides whether it is masked for readers without clearance, and how: the column's
customProperty ``masking`` (``hash``, ``partial``, ``null``; default ``hash`` for pii text,
else ``null``).
"""

from __future__ import annotations

import functools
import json
import math
import re
import zoneinfo
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from open_data_contract_standard.model import OpenDataContractStandard
from pydantic import ValidationError
from pyiceberg import types as it

from mesh_assets.contract.errors import ContractError
from mesh_assets.contract.model import (
    CLASSIFICATIONS,
    DEFAULT_MAX_SHRINK_PERCENT,
    DEFAULT_SETTLE_SECONDS,
    DEFAULT_STREAM_MAX_RECORDS,
    DEFAULT_STREAM_MAX_SECONDS,
    KNOWN_TYPES,
    MASKING_METHODS,
    ROLE_ACCESS,
    SENSITIVE,
    STREAM_MODES,
    STREAM_VALUE_FORMATS,
    AccessRole,
    Column,
    DataProduct,
    StreamSource,
    parse_duration,
    parse_type,
)
from mesh_assets.contract.partitions import parse_dagster_partitions, parse_partition_fields
from mesh_assets.contract.row_filters import FilterError, canonical
from mesh_assets.contract.rules import dbt_tests_from_contract, rules_from_contract

_NAME = re.compile(r"[a-z][a-z0-9_]*")
SOURCE_KEYS = ("format", "file", "demoData", "settleSeconds", "timezone")
SOURCE_FORMATS = ("csv", "parquet")
STREAM_KEYS = ("format", "topic", "key", "valueFormat", "mode", "maxRecords", "maxSeconds", "timezone")
_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_MAX_STREAM_RECORDS = 1_000_000
_MAX_STREAM_SECONDS = 600
# names a producer gives a file it is still writing, or a completion marker: never a landing file
_NOT_LANDING = (".part", ".tmp", ".done")
_MAX_SETTLE_SECONDS = 3600


# --- loading -----------------------------------------------------------------------------------


@functools.cache
def _odcs_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(OpenDataContractStandard.json_schema())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def _custom_properties(items: list[dict] | None) -> dict[str, Any]:
    return {item["property"]: item.get("value") for item in items or []}


# libyaml's loader when PyYAML was built with it (8x faster: contracts are read at every load)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def contract_visibility(path: Path) -> str:
    """A contract's output port (``visibility``) without validating the whole contract: what
    another domain's code location needs to know about it at load."""
    raw = yaml.load(path.read_text(), Loader=_YAML_LOADER) or {}
    return str(_custom_properties(raw.get("customProperties")).get("visibility", "public"))


def parse_contract(path: Path | str, *, domain: str | None = None) -> DataProduct:
    """Read, validate and derive one contract. Every failure is a :class:`ContractError`.

    A process parses the same text of a contract once (validating it against the ODCS schema
    takes about 30 ms, and a materialization reads each contract several times: its code
    location, the products it references, the summary); a changed file is parsed again."""
    path = Path(path)
    return _parse_text(path, domain, path.read_text())


@functools.lru_cache(maxsize=4096)
def _parse_text(path: Path, domain: str | None, text: str) -> DataProduct:
    try:
        raw = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ContractError(path, f"is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ContractError(path, "must be a YAML mapping in the ODCS v3 format")
    product = raw.get("dataProduct") or path.stem

    for table in raw.get("schema") or []:
        for prop in (table.get("properties") or []) if isinstance(table, dict) else []:
            if isinstance(prop, dict) and not prop.get("logicalType"):
                raise ContractError(
                    path,
                    "missing 'logicalType'",
                    product=product,
                    column=prop.get("name"),
                    hint="ODCS logical types: string, "
                    "integer, number, boolean, date, timestamp, time; the exact "
                    "type goes in physicalType",
                )
    first = jsonschema.exceptions.best_match(_odcs_validator().iter_errors(raw))
    if first is not None:
        location = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ContractError(
            path,
            f"not a valid ODCS v3 contract at {location}: {first.message}",
            product=product,
            hint="see https://bitol-io.github.io/open-data-contract-standard/",
        )
    try:
        OpenDataContractStandard(**raw)
    except ValidationError as exc:
        raise ContractError(path, f"not a valid ODCS v3 contract: {exc}", product=product) from None

    for key in ("domain", "dataProduct", "schema"):
        if not raw.get(key):
            raise ContractError(
                path,
                f"missing required field '{key}'",
                product=product,
                hint="the platform needs domain, dataProduct and schema",
            )
    if domain is not None and raw["domain"] != domain:
        raise ContractError(
            path, f"domain is '{raw['domain']}' but the file lives in domain '{domain}'", product=product
        )
    if product != path.stem:
        raise ContractError(
            path, f"dataProduct '{product}' must match the file name '{path.stem}.yaml'", product=product
        )
    for what, name in (("domain", raw["domain"]), ("dataProduct", product)):
        if not _NAME.fullmatch(name):
            raise ContractError(
                path,
                f"{what} '{name}' must be lower_snake_case (letters, digits, underscores)",
                product=product,
            )
    if len(raw["schema"]) != 1:
        raise ContractError(
            path, "schema must hold exactly one object (the product's table)", product=product
        )
    table = raw["schema"][0]
    props = table.get("properties") or []
    if not props:
        raise ContractError(path, "schema has no properties (columns)", product=product)

    columns: list[Column] = []
    for prop in props:
        name = prop.get("name")
        if not name:
            raise ContractError(path, "a schema property has no name", product=product)
        if not _NAME.fullmatch(name):
            raise ContractError(path, "column names must be lower_snake_case", product=product, column=name)
        if name in {c.name for c in columns}:
            raise ContractError(path, "column is declared twice", product=product, column=name)
        try:
            col_type = parse_type(prop.get("physicalType"), prop.get("logicalType"))
        except KeyError as exc:
            raise ContractError(
                path,
                f"unknown type '{exc.args[0]}'",
                product=product,
                column=name,
                hint=f"use one of {', '.join(KNOWN_TYPES)}",
            ) from None
        classification = prop.get("classification")
        if classification is not None and classification not in CLASSIFICATIONS:
            raise ContractError(
                path,
                f"classification '{classification}' is unknown",
                product=product,
                column=name,
                hint=f"use one of {', '.join(CLASSIFICATIONS)}: access decisions are made from it",
            )
        columns.append(
            Column(
                name=name,
                type=col_type,
                required=bool(prop.get("required")),
                description=prop.get("description"),
                classification=classification,
                primary_key_position=(prop.get("primaryKeyPosition") or 1)
                if prop.get("primaryKey")
                else None,
                unique=bool(prop.get("unique")),
                masking=_masking(path, product, name, col_type, classification, prop),
                allow_non_finite=_allow_non_finite(path, product, name, col_type, prop),
            )
        )

    custom = _custom_properties(raw.get("customProperties"))
    team = raw.get("team")
    owner = None
    if isinstance(team, dict):
        owner = team.get("name")
    elif isinstance(team, list) and team:
        owner = next((m.get("username") for m in team if m.get("role") == "owner"), None)
    if not owner:
        raise ContractError(path, "missing owner: set team.name", product=product)

    source = custom.get("source")
    transform = custom.get("transform")
    if bool(source) == bool(transform):
        raise ContractError(
            path,
            "set exactly one of customProperties 'source' (ingested product) or 'transform: dbt' (dbt model)",
            product=product,
        )
    if transform is not None and transform != "dbt":
        raise ContractError(
            path, f"transform '{transform}' is not supported", product=product, hint="use 'dbt'"
        )
    stream = None
    if isinstance(source, dict) and str(source.get("format", "")).lower() == "kafka":
        stream = _stream_source(path, product, source, columns)
    elif source is not None:
        _check_source(path, product, source)

    visibility = custom.get("visibility", "public")
    if visibility not in ("public", "internal"):
        raise ContractError(
            path,
            f"visibility '{visibility}' is not allowed",
            product=product,
            hint="use public (other domains may read it) or internal",
        )
    try:
        retention = parse_duration(custom.get("retention", "7d"))
    except ValueError:
        raise ContractError(
            path,
            f"retention '{custom.get('retention')}' is not a duration",
            product=product,
            hint="use minutes, hours, days or weeks: 30m, 12h, 7d, 2w",
        ) from None
    freshness = _freshness(path, product, raw.get("slaProperties") or [])
    by_name = {c.name: c for c in columns}
    partitioning = parse_partition_fields(path, product, table, by_name)
    dagster_partitions = parse_dagster_partitions(path, product, custom.get("dagsterPartitions"), by_name)
    max_shrink = _max_shrink_percent(
        path, product, custom, full_refresh=bool(source) and not stream and not dagster_partitions
    )
    description = raw.get("description") or {}
    info = DataProduct(
        domain=raw["domain"],
        name=product,
        version=str(raw["version"]),
        path=path,
        description=(table.get("description") or description.get("purpose") or "").strip(),
        owner=owner,
        columns=tuple(columns),
        rules=(),
        source=source,
        transform=transform,
        tags=tuple(raw.get("tags") or ()),
        status=raw.get("status") or "active",
        custom=custom,
        partitioning=partitioning,
        dagster_partitions=dagster_partitions,
        quarantine=bool(custom.get("quarantine")),
        retention=retention,
        visibility=visibility,
        freshness=freshness,
        roles=_roles(path, product, raw.get("roles"), columns),
        settle_seconds=float(source.get("settleSeconds", DEFAULT_SETTLE_SECONDS)) if source else 0.0,
        timezone=source.get("timezone") if source else None,
        max_shrink_percent=max_shrink,
        stream=stream,
    )

    rules = rules_from_contract(info, table)
    dbt_tests = dbt_tests_from_contract(info, table)
    return DataProduct(**{**info.__dict__, "rules": tuple(rules), "dbt_tests": tuple(dbt_tests)})


def _check_source(path: Path, product: str, source: Any) -> None:
    """``customProperties.source``: known keys; ``file`` a plain relative path inside the landing
    folder; ``settleSeconds`` a number of seconds; ``timezone`` an IANA zone name."""
    if not isinstance(source, dict) or not source.get("file"):
        raise ContractError(
            path,
            "customProperties source needs at least 'file' (the raw file name in the landing folder)",
            product=product,
            key="source",
        )
    unknown = sorted(set(source) - set(SOURCE_KEYS))
    if unknown:
        raise ContractError(
            path,
            f"source has unknown key(s) {', '.join(unknown)}",
            product=product,
            hint=f"known: {', '.join(SOURCE_KEYS)}",
            key=unknown[0],
        )
    file = source["file"]
    problem = _landing_name_problem(file)
    if problem:
        raise ContractError(
            path,
            f"source file {file!r} {problem}",
            product=product,
            hint="name the file relative to the domain's landing folder, e.g. file: orders.csv",
            key="file",
        )
    fmt = source.get("format")
    if fmt is not None and str(fmt).lower() not in SOURCE_FORMATS:
        raise ContractError(
            path,
            f"source format {fmt!r} is not supported",
            product=product,
            hint=f"use one of {', '.join(SOURCE_FORMATS)} (a .gz file is read as gzip-compressed csv)",
            key="format",
        )
    settle = source.get("settleSeconds", DEFAULT_SETTLE_SECONDS)
    if (
        isinstance(settle, bool)
        or not isinstance(settle, int | float)
        or not math.isfinite(settle)
        or not 0 <= settle <= _MAX_SETTLE_SECONDS
    ):
        raise ContractError(
            path,
            f"source settleSeconds {settle!r} must be a number of seconds from 0 to {_MAX_SETTLE_SECONDS}",
            product=product,
            hint="how long a landing file must stay unchanged before it is read; "
            f"default {DEFAULT_SETTLE_SECONDS:g}",
            key="settleSeconds",
        )
    _check_timezone(path, product, source.get("timezone"))


def _check_timezone(path: Path, product: str, zone: Any) -> None:
    if zone is not None:
        try:
            zoneinfo.ZoneInfo(zone if isinstance(zone, str) else "")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ContractError(
                path,
                f"source timezone {zone!r} is not a known time zone",
                product=product,
                hint="an IANA name such as UTC or America/New_York",
                key="timezone",
            ) from None


def _stream_source(path: Path, product: str, source: dict, columns: list[Column]) -> StreamSource:
    """``customProperties.source`` of a streaming product (``format: kafka``)."""

    def refuse(problem: str, key: str, hint: str | None = None) -> ContractError:
        return ContractError(path, problem, product=product, hint=hint, key=key)

    unknown = sorted(set(source) - set(STREAM_KEYS))
    if unknown:
        raise refuse(
            f"kafka source has unknown key(s) {', '.join(unknown)}",
            unknown[0],
            f"known: {', '.join(STREAM_KEYS)}",
        )
    topic = source.get("topic")
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        raise refuse(
            f"kafka source topic {topic!r} is not a Kafka topic name",
            "topic",
            "1 to 249 letters, digits, '.', '_' or '-'",
        )
    names = [c.name for c in columns]
    key = source.get("key")
    if key is not None and key not in names:
        raise refuse(
            f"kafka source key {key!r} is not a column of the contract",
            "key",
            f"name the column the message key carries, one of {', '.join(names)}",
        )
    value_format = str(source.get("valueFormat", "json")).lower()
    if value_format not in STREAM_VALUE_FORMATS:
        raise refuse(
            f"kafka source valueFormat {source.get('valueFormat')!r} is not supported",
            "valueFormat",
            "use json (one JSON object per message, its fields named as the contract's columns) "
            "or avro (one Avro record per message, binary, with the schema derived from the contract)",
        )
    mode = source.get("mode", "append")
    if mode not in STREAM_MODES:
        raise refuse(
            f"kafka source mode {mode!r} is not supported", "mode", f"use one of {', '.join(STREAM_MODES)}"
        )
    primary_key = [
        c.name for c in sorted(columns, key=lambda c: c.primary_key_position or 0) if c.primary_key_position
    ]
    if mode == "upsert" and (key is None or primary_key != [key]):
        raise refuse(
            f"kafka source mode upsert needs 'key' to be the product's one-column primary key "
            f"(key: {key!r}, primary key: {primary_key or 'none'})",
            "mode",
            "mark the key column primaryKey: true and name it as the source key",
        )
    max_records = source.get("maxRecords", DEFAULT_STREAM_MAX_RECORDS)
    if (
        isinstance(max_records, bool)
        or not isinstance(max_records, int)
        or not 1 <= max_records <= _MAX_STREAM_RECORDS
    ):
        raise refuse(
            f"kafka source maxRecords {max_records!r} must be a whole number from 1 to {_MAX_STREAM_RECORDS:,}",
            "maxRecords",
            f"the most messages one micro-batch commits; default {DEFAULT_STREAM_MAX_RECORDS:,}",
        )
    max_seconds = source.get("maxSeconds", DEFAULT_STREAM_MAX_SECONDS)
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, int | float)
        or not math.isfinite(max_seconds)
        or not 0 < max_seconds <= _MAX_STREAM_SECONDS
    ):
        raise refuse(
            f"kafka source maxSeconds {max_seconds!r} must be a number of seconds above 0 and at most {_MAX_STREAM_SECONDS}",
            "maxSeconds",
            f"how long one micro-batch reads at most; default {DEFAULT_STREAM_MAX_SECONDS:g}",
        )
    _check_timezone(path, product, source.get("timezone"))
    return StreamSource(
        topic=topic,
        key=key,
        value_format=value_format,
        mode=mode,
        max_records=max_records,
        max_seconds=float(max_seconds),
    )


def _landing_name_problem(file: Any) -> str | None:
    """Why ``file`` cannot name a landing file, or None."""
    if not isinstance(file, str):
        return "must be a text"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in file) or "\\" in file:
        return "holds a control character or a backslash"
    if file.startswith("/") or file[1:2] == ":":
        return "is an absolute path: it must stay inside the landing folder"
    parts = file.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "leaves or repeats folders ('..', '.', '//'): it must stay inside the landing folder"
    if any(part.startswith(".") for part in parts):
        return "names a hidden file (a leading dot): those are ignored in the landing zone"
    if file.endswith(_NOT_LANDING):
        return f"ends with one of {', '.join(_NOT_LANDING)}: those name files still being written or markers"
    return None


def _max_shrink_percent(path: Path, product: str, custom: dict, *, full_refresh: bool) -> float | None:
    """The largest row-count drop (percent of main) a new version of a full-refresh ingested
    product may bring; None for the other products (they replace partitions or are built)."""
    if "maxShrinkPercent" not in custom:
        return DEFAULT_MAX_SHRINK_PERCENT if full_refresh else None
    value = custom["maxShrinkPercent"]
    if not full_refresh:
        raise ContractError(
            path,
            "maxShrinkPercent applies to ingested products without dagsterPartitions (a full refresh)",
            product=product,
            hint="remove it",
            key="maxShrinkPercent",
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ContractError(
            path,
            f"maxShrinkPercent {value!r} must be a number from 0 to 100",
            product=product,
            hint=f"the largest drop of the row count a new version may bring; default {DEFAULT_MAX_SHRINK_PERCENT:g}",
            key="maxShrinkPercent",
        )
    return float(value)


def _allow_non_finite(path: Path, product: str, name: str, col_type: it.PrimitiveType, prop: dict) -> bool:
    """The column's customProperty ``allowNonFinite``: nan, inf and -inf are values of this
    float/double column (otherwise they are refused like any value that does not parse)."""
    custom = {
        c.get("property"): c.get("value") for c in prop.get("customProperties") or [] if isinstance(c, dict)
    }
    if "allowNonFinite" not in custom:
        return False
    value = custom["allowNonFinite"]
    if not isinstance(value, bool):
        raise ContractError(
            path, f"allowNonFinite {value!r} must be true or false", product=product, column=name
        )
    if value and not isinstance(col_type, it.FloatType | it.DoubleType):
        raise ContractError(
            path,
            f"allowNonFinite applies to float and double columns; this one is {col_type}",
            product=product,
            column=name,
            hint="remove it",
        )
    return value


def _masking(
    path: Path, product: str, name: str, col_type: it.PrimitiveType, classification: str | None, prop: dict
) -> str | None:
    """How the column is shown to a reader without clearance for its classification: the
    column's customProperty ``masking``, else hash for pii text, else null. ``None`` for the
    columns every reader sees (public, internal, unclassified)."""
    custom = {c.get("property"): c for c in prop.get("customProperties") or [] if isinstance(c, dict)}
    is_text = isinstance(col_type, it.StringType)
    if "masking" not in custom:
        if classification not in SENSITIVE:
            return None
        return "hash" if classification == "pii" and is_text else "null"
    # `value: null` (YAML null) and `value: "null"` both mean: show NULL
    method = custom["masking"].get("value")
    method = "null" if method is None else str(method)
    if method not in MASKING_METHODS:
        raise ContractError(
            path,
            f"masking '{method}' is unknown",
            product=product,
            column=name,
            hint=f"use one of {', '.join(MASKING_METHODS)}",
        )
    if classification not in SENSITIVE:
        raise ContractError(
            path,
            f"masking applies to confidential and pii columns; this one "
            f"is {classification or 'unclassified'}",
            product=product,
            column=name,
            hint="classify it confidential or pii, or drop masking",
        )
    if method in ("hash", "partial") and not is_text:
        raise ContractError(
            path,
            f"masking '{method}' needs a text column (this one is {col_type})",
            product=product,
            column=name,
            hint="use masking null for non-text columns",
        )
    return method


def _roles(path: Path, product: str, items: Any, columns: list[Column]) -> tuple[AccessRole, ...]:
    """The ODCS ``roles``: groups that may read the product, with their clearance and row
    filter (role customProperties ``clearance`` and ``rowFilter``)."""

    out: list[AccessRole] = []
    for item in items or []:
        name = item.get("role")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ContractError(
                path,
                f"role {name!r} must be lower_snake_case (it names a group of the identity provider)",
                product=product,
            )
        if name in {r.role for r in out}:
            raise ContractError(path, f"role '{name}' is declared twice", product=product)
        access = str(item.get("access") or "read").lower()
        if access not in ROLE_ACCESS:
            raise ContractError(
                path,
                f"role '{name}': access '{access}' is not supported",
                product=product,
                hint="readers only (access: read): products are written by the platform's service user",
            )
        custom = _custom_properties(item.get("customProperties"))
        unknown = sorted(set(custom) - {"clearance", "rowFilter"})
        if unknown:
            raise ContractError(
                path,
                f"role '{name}': unknown customProperties {unknown}",
                product=product,
                hint="known: clearance, rowFilter",
            )
        clearance = custom.get("clearance") or []
        clearance = [clearance] if isinstance(clearance, str) else clearance
        if not isinstance(clearance, list) or any(c not in SENSITIVE for c in clearance):
            raise ContractError(
                path,
                f"role '{name}': clearance {clearance!r} must list "
                f"classifications among {', '.join(SENSITIVE)}",
                product=product,
            )
        row_filter = custom.get("rowFilter")
        if row_filter is not None:
            try:
                row_filter = canonical(row_filter, [c.name for c in columns])
            except FilterError as exc:
                raise ContractError(
                    path, f"role '{name}': rowFilter {row_filter!r} {exc}", product=product
                ) from None
        out.append(
            AccessRole(
                role=name,
                access=access,
                clearance=tuple(sorted(set(clearance))),
                row_filter=row_filter,
                description=item.get("description"),
            )
        )
    return tuple(out)


_SLA_UNITS = {
    "m": "m",
    "min": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "w": "w",
    "week": "w",
    "weeks": "w",
}


def _freshness(path: Path, product: str, sla: list[dict]) -> timedelta | None:
    """The freshness SLA: ``{property: freshness (or latency), value: 24, unit: h}``."""
    for item in sla:
        if item.get("property") not in ("freshness", "latency"):
            continue
        unit = _SLA_UNITS.get(str(item.get("unit", "")).lower())
        try:
            if unit is None:
                raise ValueError
            return parse_duration(f"{int(item['value'])}{unit}")
        except (KeyError, TypeError, ValueError):
            raise ContractError(
                path,
                f"SLA {item.get('property')} needs an integer value and a unit",
                product=product,
                hint="e.g. {property: freshness, value: 24, unit: h}",
            ) from None
    return None
