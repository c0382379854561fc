"""Plan: a :class:`~mesh_assets.openmetadata.collect.MeshView` -> ordered phases of
create-or-update calls (services before databases before tables before lineage), with the
OpenMetadata payloads (:mod:`mesh_assets.openmetadata.models`) for one API version
(:mod:`mesh_assets.openmetadata.api`). Nothing is sent here."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from mesh_assets.contract.model import parse_type
from mesh_assets.dbt.project import trino_type
from mesh_assets.openmetadata import models as m
from mesh_assets.openmetadata.api import DEFAULT, TEST_SUITES_PATH, ApiVersion
from mesh_assets.openmetadata.client import quote
from mesh_assets.openmetadata.collect import AssetView, CheckView, Evaluation, MeshView, RunFacts
from mesh_assets.openmetadata.lineage import compiled_sql, dialect_of, model_column_lineage
from mesh_assets.settings import openmetadata_names, trino_credentials, trino_settings

DOMAIN_TYPES = {
    "source-aligned": "Source-aligned",
    "consumer-aligned": "Consumer-aligned",
    "aggregate": "Aggregate",
}
CUSTOM_TABLE_TEST = "meshAssetCheck"
CUSTOM_COLUMN_TEST = "meshColumnAssetCheck"
COLLECTIONS = {
    "table": "tables",
    "team": "teams",
    "user": "users",
    "pipeline": "pipelines",
    "domain": "domains",
    "dataProduct": "dataProducts",
    "databaseSchema": "databaseSchemas",
    "database": "databases",
}


@dataclass(frozen=True)
class ExportConfig:
    """Names of the OpenMetadata side (env: ``OPENMETADATA_DATABASE_SERVICE``,
    ``OPENMETADATA_PIPELINE_SERVICE``, ``OPENMETADATA_DAGSTER_URL``; the database is the Trino
    catalog ``MESH_TRINO_CATALOG``)."""

    database_service: str = "mesh"
    database: str = "iceberg"
    pipeline_service: str = "dagster"
    classification: str = "DataClassification"
    service_type: str = "Trino"
    trino_host_port: str | None = None
    trino_user: str | None = None
    # Trino with passwords: HTTPS, its certificate verified with this CA file (a path where
    # OpenMetadata's ingestion runs). The password itself is never exported: OpenMetadata's
    # admin enters it (or its secrets manager holds it).
    trino_https: bool = False
    trino_ca_file: str | None = None
    dagster_url: str | None = None

    @classmethod
    def from_env(cls) -> ExportConfig:
        trino = trino_settings()
        user, password = trino_credentials()
        return cls(
            database=trino.catalog,
            trino_host_port=f"{trino.host}:{trino.port}",
            trino_user=user,
            trino_https=password is not None,
            trino_ca_file=trino.ca_file if password is not None else None,
            **openmetadata_names(),
        )


def _percent(part: int, total: int, *, empty: float) -> float:
    return round(100.0 * part / total, 4) if total else empty


def fqn(*parts: str) -> str:
    """OpenMetadata's fully qualified name: parts joined by dots, a part holding a dot quoted."""
    return ".".join(f'"{p}"' if "." in p else p for p in parts)


def fqn_add(prefix: str, *parts: str) -> str:
    """``prefix`` (already a fully qualified name) and more parts."""
    return ".".join([prefix, fqn(*parts)]) if parts else prefix


def _relations(manifest: Mapping, asset: AssetView) -> set[tuple[str, str]]:
    """``(schema, name)`` under which compiled SQL may read ``asset``'s table: the Iceberg
    table itself, the dbt model's alias (``<model>__staging`` on Trino), the dbt source's
    identifier."""
    out = {(asset.schema, asset.table_name)}
    node = (manifest or {}).get("nodes", {}).get(asset.dbt_unique_id or "")
    if node:
        out.add((node["schema"], node.get("alias") or node["name"]))
    for source in (manifest or {}).get("sources", {}).values():
        if (source.get("source_name"), source.get("name")) == (asset.domain, asset.key[-1]):
            out.add((source["schema"], source.get("identifier") or source["name"]))
    return out


# --- plan ----------------------------------------------------------------------------------------


@dataclass
class Call:
    """One request. ``register``: remember the answer's id and FQN as ``(type, planned fqn)``;
    ``path_ref``: the ``{fqn}`` in ``path`` is the FQN the server gave that entity."""

    method: str
    path: str
    payload: m.Payload | None
    entity: str
    register: tuple[str, str] | None = None
    path_ref: m.FqnRef | None = None
    ensure: bool = False  # GET by name first, create only when missing (teams)
    time_series: bool = False  # a status or a result (not a structural entity)

    def planned_path(self) -> str:
        """The path with the planned FQN in place of ``{fqn}`` (the exporter uses the FQN the
        server gave the entity, which is the same unless the server renamed it)."""
        return self.path.replace("{fqn}", quote(self.path_ref.fqn)) if self.path_ref else self.path


@dataclass
class Phase:
    name: str
    calls: list[Call]


@dataclass
class Plan:
    phases: list[Phase]
    api: ApiVersion = DEFAULT
    warnings: list[str] = field(default_factory=list)

    @property
    def calls(self) -> list[Call]:
        return [c for p in self.phases for c in p.calls]

    def body(self, call: Call, resolve) -> dict | None:
        """The JSON body of ``call`` in this plan's API version."""
        return self.api.body(call.payload, resolve) if call.payload is not None else None

    def structure_digest(self) -> str:
        """A digest of every structural payload (no statuses or results): unchanged metadata
        gives the same digest, so a sensor can skip re-sending it."""
        h = hashlib.sha256()
        for call in self.calls:
            if call.time_series:
                continue
            body = self.body(call, lambda r: f"{type(r).__name__}:{r.type}:{r.fqn}")
            h.update(json.dumps([call.method, call.path, body], sort_keys=True).encode())
        return h.hexdigest()


_ICEBERG_TO_OM = {
    "StringType": "STRING",
    "BooleanType": "BOOLEAN",
    "IntegerType": "INT",
    "LongType": "BIGINT",
    "FloatType": "FLOAT",
    "DoubleType": "DOUBLE",
    "DateType": "DATE",
    "TimeType": "TIME",
    "TimestampType": "TIMESTAMP",
    "TimestamptzType": "TIMESTAMPZ",
    "BinaryType": "BYTES",
    "UUIDType": "UUID",
    "DecimalType": "DECIMAL",
    "FixedType": "FIXED",
}


def om_column_type(iceberg_type) -> tuple[str, str, int | None, int | None]:
    """(dataType, dataTypeDisplay, precision, scale) of an Iceberg type. Strings are STRING
    (OpenMetadata requires a length for VARCHAR); the display is the Trino type."""

    kind = type(iceberg_type).__name__
    try:
        display = trino_type(iceberg_type)
    except KeyError:
        display = str(iceberg_type)
    if kind == "DecimalType":
        return "DECIMAL", display, iceberg_type.precision, iceberg_type.scale
    return _ICEBERG_TO_OM.get(kind, "UNKNOWN"), display, None, None


def _iso_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    out = "P" + (f"{days}D" if days else "")
    time_part = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return out + ("T" + time_part if time_part else ("" if days else "T0S"))


def placeholder(ref: m.Ref | m.FqnRef):
    """What a reference is printed as when nothing is sent (``--dry-run``): the planned FQN,
    and for an entity reference an id derived from type and FQN (uuid5; a real export uses
    the id the server gave)."""
    if isinstance(ref, m.FqnRef):
        return ref.fqn
    ident = uuid.uuid5(uuid.NAMESPACE_URL, f"openmetadata:{ref.type}:{ref.fqn}")
    return m.EntityReference(id=str(ident), type=ref.type, fullyQualifiedName=ref.fqn).to_json()


class _Planner:
    def __init__(self, view: MeshView, config: ExportConfig, api: ApiVersion):
        self.view, self.c, self.api = view, config, api
        self.warnings = list(view.warnings)
        self._columns: dict[tuple, tuple] = {}

    # names
    def table_fqn(self, asset: AssetView) -> str:
        return fqn(self.c.database_service, self.c.database, asset.schema, asset.table_name)

    def schema_fqn(self, schema: str) -> str:
        return fqn(self.c.database_service, self.c.database, schema)

    def pipeline_fqn(self, domain: str) -> str:
        return fqn(self.c.pipeline_service, domain)

    @staticmethod
    def data_product_name(product) -> str:
        return f"{product.domain}-{product.name}"  # '-' never occurs in mesh names

    def owners(self, name: str | None) -> list[m.Ref] | None:
        if not name:
            return None
        if "@" in name:
            return [m.Ref("user", name.split("@", 1)[0])]
        return [m.Ref("team", name)]

    # entities
    def tables(self) -> list[AssetView]:
        """Every table in scope: the primary domains' assets and the tables they read."""
        wanted = {k for k, a in self.view.assets.items() if a.materializable}
        wanted |= {p for k in list(wanted) for p in self.view.assets[k].parents}
        return [self.view.assets[k] for k in sorted(wanted) if k in self.view.assets]

    def columns(self, asset: AssetView) -> tuple[list[m.Column], list[m.TableConstraint] | None]:
        if asset.key not in self._columns:
            self._columns[asset.key] = self._table_columns(asset)
        return self._columns[asset.key]

    def _table_columns(self, asset: AssetView) -> tuple[list[m.Column], list[m.TableConstraint] | None]:

        product = asset.product
        if product is not None:
            pk = product.primary_key
            cols = []
            for i, c in enumerate(product.columns, start=1):
                data_type, display, precision, scale = om_column_type(c.type)
                constraint = (
                    "PRIMARY_KEY"
                    if pk == (c.name,)
                    else "UNIQUE"
                    if c.unique
                    else "NOT_NULL"
                    if c.required
                    else None
                )
                tags = (
                    [m.TagLabel(fqn(self.c.classification, c.classification))] if c.classification else None
                )
                cols.append(
                    m.Column(
                        name=c.name,
                        dataType=data_type,
                        dataTypeDisplay=display,
                        description=c.description or None,
                        constraint=constraint,
                        ordinalPosition=i,
                        precision=precision,
                        scale=scale,
                        tags=tags,
                    )
                )
            constraints = [m.TableConstraint("PRIMARY_KEY", list(pk))] if len(pk) > 1 else None
            return cols, constraints
        # a dbt model without a contract: the columns dbt's artifacts describe
        catalog = self.view.catalogs.get(asset.domain, {})
        entry = catalog.get("nodes", {}).get(asset.dbt_unique_id or "") or next(
            (
                n
                for n in catalog.get("nodes", {}).values()
                if n.get("metadata", {}).get("name") == asset.table_name
                and n.get("metadata", {}).get("schema") == asset.schema
            ),
            None,
        )
        manifest_node = (
            self.view.manifests.get(asset.domain, {}).get("nodes", {}).get(asset.dbt_unique_id or "", {})
        )
        described = {
            c: (v.get("description") or None) for c, v in (manifest_node.get("columns") or {}).items()
        }
        cols = []
        if entry:
            for c in sorted(entry.get("columns", {}).values(), key=lambda c: c.get("index", 0)):
                try:
                    data_type, display, precision, scale = om_column_type(parse_type(c["type"], None))
                except KeyError:
                    data_type, display, precision, scale = "UNKNOWN", str(c.get("type")), None, None
                cols.append(
                    m.Column(
                        name=c["name"],
                        dataType=data_type,
                        dataTypeDisplay=display,
                        description=c.get("comment") or described.get(c["name"]),
                        ordinalPosition=c.get("index"),
                        precision=precision,
                        scale=scale,
                    )
                )
        else:
            for i, (name, c) in enumerate((manifest_node.get("columns") or {}).items(), start=1):
                cols.append(
                    m.Column(
                        name=name,
                        dataType="UNKNOWN",
                        dataTypeDisplay=c.get("data_type") or "unknown",
                        description=c.get("description") or None,
                        ordinalPosition=i,
                    )
                )
        if not cols:
            self.warnings.append(
                f"table {asset.table}: no contract and no dbt catalog entry: exported without columns"
            )
        return cols, None

    def plan(self, runs: Mapping[str, list[RunFacts]], evaluations: Sequence[Evaluation]) -> Plan:
        c, view = self.c, self.view
        tables = self.tables()
        table_domains = sorted({a.domain for a in tables} | set(view.primary))
        products = {a.product.identifier: a.product for a in tables if a.product is not None}
        owners = sorted(
            {view.domains[d].owner for d in table_domains if d in view.domains}
            | {p.owner for p in products.values()}
        )
        phases: list[Phase] = []

        classes = sorted(
            {col.classification for p in products.values() for col in p.columns if col.classification}
        )
        if classes:
            phases.append(
                Phase(
                    "classification",
                    [
                        Call(
                            "PUT",
                            "/v1/classifications",
                            m.CreateClassification(
                                name=c.classification,
                                displayName="Data classification",
                                description="Column classification declared in the data mesh's ODCS data "
                                "contracts (`classification` of each schema property).",
                                mutuallyExclusive=True,
                            ),
                            f"classification {c.classification}",
                        )
                    ],
                )
            )
        tags = [
            Call(
                "PUT",
                "/v1/tags",
                m.CreateTag(
                    name=cls,
                    classification=c.classification,
                    description=f"Columns the data contracts classify as `{cls}`.",
                ),
                f"tag {fqn(c.classification, cls)}",
            )
            for cls in classes
        ]
        teams = [
            Call(
                "PUT",
                "/v1/teams",
                m.CreateTeam(name=o, displayName=o, description=f"Owner of data products of the mesh ({o})."),
                f"team {o}",
                register=("team", o),
                ensure=True,
            )
            for o in owners
            if "@" not in o
        ]
        phases.append(Phase("owners and tags", tags + teams))

        phases.append(
            Phase(
                "domains",
                [
                    Call(
                        "PUT",
                        "/v1/domains",
                        m.CreateDomain(
                            name=d,
                            displayName=d.replace("_", " ").title(),
                            description=view.domains[d].description or f"The {d} domain of the mesh.",
                            domainType=DOMAIN_TYPES[view.domains[d].type],
                            owners=self.owners(view.domains[d].owner),
                        ),
                        f"domain {d}",
                        register=("domain", d),
                    )
                    for d in table_domains
                    if d in view.domains
                ],
            )
        )
        phases.append(
            Phase(
                "data products",
                [
                    Call(
                        "PUT",
                        "/v1/dataProducts",
                        m.CreateDataProduct(
                            name=self.data_product_name(p),
                            displayName=p.identifier,
                            description=p.description or f"Data product {p.identifier}.",
                            domains=[p.domain],
                            owners=self.owners(p.owner),
                        ),
                        f"data product {p.identifier}",
                        register=("dataProduct", self.data_product_name(p)),
                    )
                    for p in sorted(products.values(), key=lambda p: p.identifier)
                ],
            )
        )

        connection = None
        if c.service_type == "Trino" and c.trino_host_port:
            connection = {
                "config": {
                    "type": "Trino",
                    "scheme": "trino",
                    "hostPort": c.trino_host_port,
                    "username": c.trino_user or "mesh",
                    "catalog": c.database,
                    **({"connectionArguments": {"http_scheme": "https"}} if c.trino_https else {}),
                    **({"verify": c.trino_ca_file} if c.trino_ca_file else {}),
                }
            }
        services = [
            Call(
                "PUT",
                "/v1/services/databaseServices",
                m.CreateDatabaseService(
                    name=c.database_service,
                    serviceType=c.service_type,
                    displayName="Data mesh (Iceberg)",
                    connection=connection,
                    description="The Apache Iceberg tables of the data mesh's products, "
                    "served by Trino (exported by `mesh openmetadata export`).",
                ),
                f"database service {c.database_service}",
                register=("databaseService", c.database_service),
            )
        ]
        primaries = [
            d for d in view.primary if any(a.materializable and a.domain == d for a in view.assets.values())
        ]
        if primaries:
            pipe_conn = {"config": {"type": "Dagster", "host": c.dagster_url}} if c.dagster_url else None
            services.append(
                Call(
                    "PUT",
                    "/v1/services/pipelineServices",
                    m.CreatePipelineService(
                        name=c.pipeline_service,
                        serviceType="Dagster",
                        connection=pipe_conn,
                        displayName="Dagster (data mesh)",
                        description="Dagster code locations of the data mesh, one pipeline per domain.",
                    ),
                    f"pipeline service {c.pipeline_service}",
                    register=("pipelineService", c.pipeline_service),
                )
            )
        phases.append(Phase("services", services))
        phases.append(
            Phase(
                "database",
                [
                    Call(
                        "PUT",
                        "/v1/databases",
                        m.CreateDatabase(
                            name=c.database,
                            service=c.database_service,
                            description="The Iceberg catalog of the mesh (a Trino catalog); one schema per "
                            "domain.",
                        ),
                        f"database {fqn(c.database_service, c.database)}",
                        register=("database", fqn(c.database_service, c.database)),
                    )
                ],
            )
        )
        schemas = sorted({a.schema for a in tables})
        phases.append(
            Phase(
                "schemas",
                [
                    Call(
                        "PUT",
                        "/v1/databaseSchemas",
                        m.CreateDatabaseSchema(
                            name=s,
                            database=fqn(c.database_service, c.database),
                            description=(view.domains[s].description if s in view.domains else None),
                            owners=self.owners(view.domains[s].owner) if s in view.domains else None,
                            domains=[s] if s in view.domains else None,
                        ),
                        f"schema {self.schema_fqn(s)}",
                        register=("databaseSchema", self.schema_fqn(s)),
                    )
                    for s in schemas
                ],
            )
        )

        table_calls = []
        for asset in tables:
            columns, constraints = self.columns(asset)
            product = asset.product
            table_calls.append(
                Call(
                    "PUT",
                    "/v1/tables",
                    m.CreateTable(
                        name=asset.table_name,
                        databaseSchema=self.schema_fqn(asset.schema),
                        columns=columns,
                        tableType="Iceberg",
                        description=asset.description or None,
                        displayName=product.identifier if product is not None else None,
                        owners=self.owners(
                            product.owner
                            if product is not None
                            else view.domains[asset.domain].owner
                            if asset.domain in view.domains
                            else None
                        ),
                        domains=[asset.domain] if asset.domain in view.domains else None,
                        dataProducts=[self.data_product_name(product)] if product is not None else None,
                        tableConstraints=constraints,
                        retentionPeriod=_iso_duration(product.retention) if product is not None else None,
                    ),
                    f"table {self.table_fqn(asset)}",
                    register=("table", self.table_fqn(asset)),
                )
            )
        pipelines = [self.pipeline(d) for d in primaries]
        phases.append(Phase("tables and pipelines", table_calls + pipelines))

        statuses = [
            Call(
                "PUT",
                f"/v1/pipelines/{quote(self.pipeline_fqn(d))}/status",
                m.PipelineStatus(
                    timestamp=r.start_ms,
                    executionStatus=r.status,
                    taskStatus=[
                        m.TaskStatus(name=t, executionStatus=s, startTime=r.start_ms, endTime=end or r.end_ms)
                        for t, s, end in r.tasks
                    ],
                ),
                f"status of pipeline {self.pipeline_fqn(d)} for run {r.run_id}",
                time_series=True,
            )
            for d in primaries
            for r in runs.get(d, ())
        ]
        lineage = self.lineage()
        suites, definitions, cases = self.quality()
        phases.append(Phase("lineage, statuses, test suites", statuses + lineage + suites + definitions))
        phases.append(Phase("test cases", cases))
        phases.append(Phase("test results", self.results(evaluations)))
        return Plan([p for p in phases if p.calls], api=self.api, warnings=self.warnings)

    def pipeline(self, domain: str) -> Call:
        c, view = self.c, self.view
        assets = sorted(
            (a for a in view.assets.values() if a.materializable and a.domain == domain), key=lambda a: a.key
        )
        children: dict[tuple, list[str]] = {}
        for a in assets:
            for p in a.parents:
                children.setdefault(p, []).append(a.task_name)
        tasks = [
            m.Task(
                name=a.task_name,
                displayName=a.product.identifier if a.product else ".".join(a.key),
                description=a.description or None,
                downstreamTasks=sorted(children.get(a.key, [])) or None,
                taskType=(
                    "dbt model"
                    if a.dbt_unique_id or (a.product and a.product.transform == "dbt")
                    else "ingestion"
                    if a.product and a.product.source
                    else "asset"
                ),
                sourceUrl=f"{c.dagster_url}/assets/{a.task_name}" if c.dagster_url else None,
            )
            for a in assets
        ]
        meta = view.domains[domain]
        return Call(
            "PUT",
            "/v1/pipelines",
            m.CreatePipeline(
                name=domain,
                service=c.pipeline_service,
                displayName=f"{domain} (Dagster code location)",
                description=meta.description or f"Assets of the {domain} domain.",
                tasks=tasks,
                owners=self.owners(meta.owner),
                domains=[domain],
                sourceUrl=f"{c.dagster_url}/locations/{domain}/asset-groups/{domain}"
                if c.dagster_url
                else None,
            ),
            f"pipeline {self.pipeline_fqn(domain)}",
            register=("pipeline", self.pipeline_fqn(domain)),
        )

    def lineage(self) -> list[Call]:

        view = self.view
        calls = []
        for asset in sorted(
            (a for a in view.assets.values() if a.materializable and a.parents), key=lambda a: a.key
        ):
            manifest = view.manifests.get(asset.domain, {})
            sql = compiled_sql(manifest, asset.dbt_unique_id) if asset.dbt_unique_id else None
            edges = []
            parents = [view.assets[p] for p in asset.parents if p in view.assets]
            relations = {p.key: _relations(manifest, p) for p in parents}
            if sql:
                schema = {}
                for p in parents:
                    for namespace, name in relations[p.key]:
                        schema.setdefault(namespace, {})[name] = {
                            col.name: col.dataTypeDisplay or "varchar" for col in self.columns(p)[0]
                        }
                out_columns = [col.name for col in self.columns(asset)[0]]
                try:
                    edges = model_column_lineage(
                        sql, dialect=dialect_of(manifest), schema=schema, columns=out_columns or None
                    )
                except ValueError as exc:
                    self.warnings.append(f"{asset.table}: no column lineage ({exc})")
            elif asset.dbt_unique_id:
                self.warnings.append(
                    f"{asset.table}: no compiled SQL in the dbt artifacts of "
                    f"domain {asset.domain}: table-level lineage only"
                )
            to_fqn = self.table_fqn(asset)
            for parent in parents:
                from_fqn = self.table_fqn(parent)
                columns = []
                for e in edges:
                    sources = [
                        fqn_add(from_fqn, col)
                        for s, t, col in e.from_columns
                        if (s, t) in relations[parent.key]
                    ]
                    if sources:
                        columns.append(
                            m.ColumnLineage(
                                fromColumns=sources,
                                toColumn=fqn_add(to_fqn, e.to_column),
                                function=e.function,
                            )
                        )
                calls.append(
                    Call(
                        "PUT",
                        "/v1/lineage",
                        m.AddLineage(
                            edge=m.EntitiesEdge(
                                fromEntity=m.Ref("table", from_fqn),
                                toEntity=m.Ref("table", to_fqn),
                                description=f"Dagster asset {asset.task_name} depends on {parent.task_name}.",
                                lineageDetails=m.LineageDetails(
                                    pipeline=m.Ref("pipeline", self.pipeline_fqn(asset.domain)),
                                    columnsLineage=columns or None,
                                    sqlQuery=sql or None,
                                    source="DbtLineage" if asset.dbt_unique_id else "PipelineLineage",
                                    description=f"{parent.table} -> {asset.table} "
                                    f"({'dbt model' if asset.dbt_unique_id else 'Dagster asset'})",
                                ),
                            )
                        ),
                        f"lineage {from_fqn} -> {to_fqn}",
                    )
                )
        return calls

    def case_of(self, check: CheckView) -> tuple[str, str | None, list[m.TestCaseParameterValue]]:
        """(test definition, column or None, parameters) of an asset check."""

        def p(name, value):
            return m.TestCaseParameterValue(name, value if isinstance(value, str) else json.dumps(value))

        rule = check.rule
        if rule is not None:
            kw, e, col = rule.kwargs, rule.expectation, rule.kwargs.get("column")
            low, high = kw.get("min_value"), kw.get("max_value")
            if kw.get("strict_min") and isinstance(low, int):
                low += 1
            if kw.get("strict_max") and isinstance(high, int):
                high -= 1
            bounds = {
                "expect_column_values_to_be_between": ("columnValuesToBeBetween", "minValue", "maxValue"),
                "expect_table_row_count_to_be_between": ("tableRowCountToBeBetween", "minValue", "maxValue"),
                "expect_column_mean_to_be_between": (
                    "columnValueMeanToBeBetween",
                    "minValueForMeanInCol",
                    "maxValueForMeanInCol",
                ),
                "expect_column_min_to_be_between": (
                    "columnValueMinToBeBetween",
                    "minValueForMinInCol",
                    "maxValueForMinInCol",
                ),
                "expect_column_max_to_be_between": (
                    "columnValueMaxToBeBetween",
                    "minValueForMaxInCol",
                    "maxValueForMaxInCol",
                ),
            }
            if e == "expect_column_values_to_not_be_null":
                return "columnValuesToBeNotNull", col, []
            if e == "expect_column_values_to_be_unique":
                return "columnValuesToBeUnique", col, []
            if e == "expect_column_values_to_be_in_set":
                return "columnValuesToBeInSet", col, [p("allowedValues", list(kw["value_set"]))]
            if e == "expect_column_values_to_match_regex":
                return "columnValuesToMatchRegex", col, [p("regex", kw["regex"])]
            if e in bounds:
                name, lo_name, hi_name = bounds[e]
                params = ([p(lo_name, low)] if low is not None else []) + (
                    [p(hi_name, high)] if high is not None else []
                )
                return name, col, params
            params = [p("expectation", e), p("kwargs", kw)]
            return (CUSTOM_COLUMN_TEST if col else CUSTOM_TABLE_TEST), col, params
        test = check.dbt_test
        if test is not None:
            meta = test.get("test_metadata") or {}
            name, kwargs = meta.get("name"), dict(meta.get("kwargs") or {})
            col = test.get("column_name") or kwargs.get("column_name")
            if name == "not_null" and col:
                return "columnValuesToBeNotNull", col, []
            if name == "unique" and col:
                return "columnValuesToBeUnique", col, []
            if name == "accepted_values" and col and "values" in kwargs:
                return "columnValuesToBeInSet", col, [p("allowedValues", kwargs["values"])]
            kwargs.pop("model", None)
            params = [p("expectation", f"dbt {name}"), p("kwargs", kwargs)]
            return (CUSTOM_COLUMN_TEST if col else CUSTOM_TABLE_TEST), col, params
        return CUSTOM_TABLE_TEST, None, [p("expectation", "dagster asset check")]

    def test_case_fqn(self, asset: AssetView, check: CheckView) -> str:
        _, column, _ = self.case_of(check)
        column = column if column and self._has_column(asset, column) else None
        return fqn_add(self.table_fqn(asset), *([column] if column else []), check.name)

    def _has_column(self, asset: AssetView, column: str) -> bool:
        return column in {c.name for c in self.columns(asset)[0]}

    def quality(self) -> tuple[list[Call], list[Call], list[Call]]:
        suites, cases, used = [], [], set()
        for asset in sorted(self.view.assets.values(), key=lambda a: a.key):
            if not asset.checks:
                continue
            table = self.table_fqn(asset)
            suite = fqn_add(table, "testSuite")
            suites.append(
                Call(
                    "PUT",
                    TEST_SUITES_PATH,
                    m.CreateTestSuite(
                        name=suite,  # as the SDK names a table's suite (and the server its FQN)
                        basicEntityReference=table,
                        description=f"Dagster asset checks of {asset.task_name}.",
                    ),
                    f"test suite of table {table}",
                    register=("testSuite", suite),
                )
            )
            for check in asset.checks:
                definition, column, params = self.case_of(check)
                if column and not self._has_column(asset, column):
                    column = None
                    if definition != CUSTOM_TABLE_TEST:
                        definition = CUSTOM_TABLE_TEST
                used.add(definition)
                link = f"<#E::table::{table}::columns::{column}>" if column else f"<#E::table::{table}>"
                planned = fqn_add(table, *([column] if column else []), check.name)
                kind = (
                    "dbt test"
                    if check.dbt_test is not None
                    else "contract rule"
                    if check.rule is not None
                    else "asset check"
                )
                cases.append(
                    Call(
                        "PUT",
                        "/v1/dataQuality/testCases",
                        m.CreateTestCase(
                            name=check.name,
                            displayName=check.name,
                            testDefinition=definition,
                            entityLink=link,
                            testSuite=m.FqnRef("testSuite", suite),
                            description=(
                                f"{check.description or check.name} (Dagster asset check, "
                                f"{kind}, {'blocking' if check.blocking else 'non-blocking'})"
                            ),
                            parameterValues=params or None,
                        ),
                        f"test case {planned}",
                        register=("testCase", planned),
                    )
                )
        definitions = []
        for name, entity_type in ((CUSTOM_TABLE_TEST, "TABLE"), (CUSTOM_COLUMN_TEST, "COLUMN")):
            if name in used:
                definitions.append(
                    Call(
                        "PUT",
                        "/v1/dataQuality/testDefinitions",
                        m.CreateTestDefinition(
                            name=name,
                            entityType=entity_type,
                            displayName=f"Mesh asset check ({entity_type.lower()})",
                            description="A Dagster asset check of the data mesh with no OpenMetadata "
                            "equivalent; Dagster evaluates it and reports the result.",
                            testPlatforms=["GreatExpectations", "dbt", "Other"],
                            parameterDefinition=[
                                m.TestCaseParameterDefinition(
                                    "expectation", description="Expectation or dbt test"
                                ),
                                m.TestCaseParameterDefinition("kwargs", description="Its arguments (JSON)"),
                            ],
                        ),
                        f"test definition {name}",
                    )
                )
        return suites, definitions, cases

    def results(self, evaluations: Sequence[Evaluation]) -> list[Call]:
        calls = []
        for ev in sorted(evaluations, key=lambda e: (e.asset, e.check, e.timestamp_ms)):
            asset = self.view.assets.get(ev.asset)
            check = next((c for c in asset.checks if c.name == ev.check), None) if asset else None
            if check is None:
                continue
            planned = self.test_case_fqn(asset, check)
            md = ev.metadata
            errored = md.get("status") == "errored"
            status = "Aborted" if errored else "Success" if ev.passed else "Failed"
            values = [
                m.TestResultValue(k, json.dumps(md[k]) if not isinstance(md[k], str) else md[k])
                for k in (
                    "observed_value",
                    "unexpected_count",
                    "element_count",
                    "severity",
                    "iceberg/snapshot_id",
                    "error",
                )
                if md.get(k) is not None
            ]
            total, bad = md.get("element_count"), md.get("unexpected_count")
            counts = {}
            if isinstance(total, int) and isinstance(bad, int) and total >= bad:
                counts = dict(
                    passedRows=total - bad,
                    failedRows=bad,
                    passedRowsPercentage=_percent(total - bad, total, empty=100.0),
                    failedRowsPercentage=_percent(bad, total, empty=0.0),
                )
            summary = (
                f"{ev.check}: {'errored' if errored else 'passed' if ev.passed else 'failed'}"
                + (f" (observed {md['observed_value']})" if md.get("observed_value") is not None else "")
                + (f" in Dagster run {ev.run_id}" if ev.run_id else "")
            )
            calls.append(
                Call(
                    self.api.result_method,
                    self.api.result_path,
                    m.TestCaseResult(
                        timestamp=ev.timestamp_ms,
                        testCaseStatus=status,
                        result=summary,
                        testResultValue=values,
                        **counts,
                    ),
                    f"result of test case {planned} at {ev.timestamp_ms}",
                    path_ref=m.FqnRef("testCase", planned),
                    time_series=True,
                )
            )
        return calls


def plan_export(
    view: MeshView,
    config: ExportConfig | None = None,
    *,
    runs: Mapping[str, list[RunFacts]] | None = None,
    evaluations: Sequence[Evaluation] = (),
    api: ApiVersion = DEFAULT,
) -> Plan:
    """Ordered phases of calls describing ``view`` for OpenMetadata API ``api`` (pure: no
    network, no Dagster)."""
    return _Planner(view, config or ExportConfig.from_env(), api).plan(runs or {}, evaluations)
