"""Typed payloads of the OpenMetadata REST API, as the exporter sends them.

Each class mirrors one request body of OpenMetadata's 2.x API; attribute names are the JSON
field names (camelCase, on purpose: a payload reads exactly like the documentation). The 1.x
shape of a body is derived in one place, :mod:`mesh_assets.openmetadata.api`.

The tests check every body against both official definitions: ``SDK_MODEL`` names the
pydantic model of ``openmetadata-ingestion`` :data:`SDK_VERSION` (under
``metadata.generated.schema.``) that validates its 2.x shape, ``SCHEMA`` the JSON Schema of
its 1.x shape, a path inside the ``json/schema/`` folder of
``org.open-metadata:openmetadata-spec`` :data:`SPEC_VERSION` (``file.json`` or
``file.json#/definitions/name``).

Fields left ``None`` are not sent. A payload may hold :class:`Ref` / :class:`FqnRef`
placeholders for entities created earlier in the same export: the exporter replaces them by
the id (entity reference) or fully qualified name the server returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

# The newest openmetadata-spec on Maven Central: the JSON Schemas of the 1.x shape.
SPEC_VERSION = "1.4.0"
SPEC_GROUP, SPEC_ARTIFACT = "org.open-metadata", "openmetadata-spec"
# The official Python SDK whose generated models define the 2.x shape (tests only: it is never
# a dependency of the platform).
SDK_PACKAGE, SDK_VERSION = "openmetadata-ingestion", "2.0.7.0"


@dataclass(frozen=True)
class Ref:
    """An entity reference to resolve at send time: ``type`` (OpenMetadata entity type such as
    ``table``, ``team``, ``pipeline``) and its fully qualified name."""

    type: str
    fqn: str


@dataclass(frozen=True)
class FqnRef:
    """The fully qualified name the server gave an entity created earlier (``type``, planned
    FQN); falls back to the planned FQN."""

    type: str
    fqn: str


def to_json(value: Any, resolve: Callable[[Any], Any] | None = None) -> Any:
    """Plain JSON of a payload: dataclasses to dicts without ``None`` fields, placeholders
    resolved by ``resolve``."""
    if isinstance(value, (Ref, FqnRef)):
        if resolve is None:
            raise ValueError(f"unresolved reference {value}")
        return resolve(value)
    if is_dataclass(value):
        out = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if item is not None and (item := to_json(item, resolve)) is not None:
                out[f.name] = item  # a reference that resolves to None is left out
        return out
    if isinstance(value, (list, tuple)):  # a reference that resolves to None is left out
        return [item for v in value if (item := to_json(v, resolve)) is not None]
    if isinstance(value, dict):
        return {k: to_json(v, resolve) for k, v in value.items() if v is not None}
    return value


class Payload:
    SCHEMA: ClassVar[str]
    SDK_MODEL: ClassVar[str]

    def to_json(self, resolve: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        return to_json(self, resolve)


# --- shared types ------------------------------------------------------------------------------


@dataclass
class EntityReference(Payload):
    SCHEMA: ClassVar[str] = "type/entityReference.json"
    SDK_MODEL: ClassVar[str] = "type.entityReference.EntityReference"
    id: str
    type: str
    fullyQualifiedName: str | None = None
    name: str | None = None


@dataclass
class TagLabel(Payload):
    SCHEMA: ClassVar[str] = "type/tagLabel.json"
    SDK_MODEL: ClassVar[str] = "type.tagLabel.TagLabel"
    tagFQN: str
    source: str = "Classification"
    labelType: str = "Automated"
    state: str = "Confirmed"


# --- classification, teams, domains --------------------------------------------------------------


@dataclass
class CreateClassification(Payload):
    SCHEMA: ClassVar[str] = "api/classification/createClassification.json"
    SDK_MODEL: ClassVar[str] = "api.classification.createClassification.CreateClassificationRequest"
    name: str
    description: str
    displayName: str | None = None
    mutuallyExclusive: bool | None = None


@dataclass
class CreateTag(Payload):
    SCHEMA: ClassVar[str] = "api/classification/createTag.json"
    SDK_MODEL: ClassVar[str] = "api.classification.createTag.CreateTagRequest"
    name: str
    description: str
    classification: str


@dataclass
class CreateTeam(Payload):
    SCHEMA: ClassVar[str] = "api/teams/createTeam.json"
    SDK_MODEL: ClassVar[str] = "api.teams.createTeam.CreateTeamRequest"
    name: str
    teamType: str = "Group"
    displayName: str | None = None
    description: str | None = None


@dataclass
class CreateDomain(Payload):
    SCHEMA: ClassVar[str] = "api/domains/createDomain.json"
    SDK_MODEL: ClassVar[str] = "api.domains.createDomain.CreateDomainRequest"
    name: str
    description: str
    domainType: str  # Source-aligned, Consumer-aligned, Aggregate
    displayName: str | None = None
    owners: list[EntityReference | Ref] | None = None


@dataclass
class CreateDataProduct(Payload):
    SCHEMA: ClassVar[str] = "api/domains/createDataProduct.json"
    SDK_MODEL: ClassVar[str] = "api.domains.createDataProduct.CreateDataProductRequest"
    name: str
    description: str
    domains: list[str]
    displayName: str | None = None
    owners: list[EntityReference | Ref] | None = None


# --- database side -------------------------------------------------------------------------------


@dataclass
class CreateDatabaseService(Payload):
    SCHEMA: ClassVar[str] = "api/services/createDatabaseService.json"
    SDK_MODEL: ClassVar[str] = "api.services.createDatabaseService.CreateDatabaseServiceRequest"
    name: str
    serviceType: str  # Trino, Iceberg, ...
    description: str | None = None
    displayName: str | None = None
    connection: dict[str, Any] | None = None  # {"config": {...}}; never credentials


@dataclass
class CreateDatabase(Payload):
    SCHEMA: ClassVar[str] = "api/data/createDatabase.json"
    SDK_MODEL: ClassVar[str] = "api.data.createDatabase.CreateDatabaseRequest"
    name: str
    service: str
    description: str | None = None


@dataclass
class CreateDatabaseSchema(Payload):
    SCHEMA: ClassVar[str] = "api/data/createDatabaseSchema.json"
    SDK_MODEL: ClassVar[str] = "api.data.createDatabaseSchema.CreateDatabaseSchemaRequest"
    name: str
    database: str
    description: str | None = None
    owners: list[EntityReference | Ref] | None = None
    domains: list[str] | None = None


@dataclass
class Column(Payload):
    SCHEMA: ClassVar[str] = "entity/data/table.json#/definitions/column"
    SDK_MODEL: ClassVar[str] = "entity.data.table.Column"
    name: str
    dataType: str
    dataTypeDisplay: str | None = None
    description: str | None = None
    constraint: str | None = None  # NULL, NOT_NULL, UNIQUE, PRIMARY_KEY
    ordinalPosition: int | None = None
    precision: int | None = None
    scale: int | None = None
    tags: list[TagLabel] | None = None


@dataclass
class TableConstraint(Payload):
    SCHEMA: ClassVar[str] = "entity/data/table.json#/definitions/tableConstraint"
    SDK_MODEL: ClassVar[str] = "entity.data.table.TableConstraint"
    constraintType: str  # UNIQUE, PRIMARY_KEY, FOREIGN_KEY
    columns: list[str]


@dataclass
class CreateTable(Payload):
    SCHEMA: ClassVar[str] = "api/data/createTable.json"
    SDK_MODEL: ClassVar[str] = "api.data.createTable.CreateTableRequest"
    name: str
    databaseSchema: str
    columns: list[Column]
    tableType: str = "Iceberg"
    description: str | None = None
    displayName: str | None = None
    owners: list[EntityReference | Ref] | None = None
    tags: list[TagLabel] | None = None
    domains: list[str] | None = None
    dataProducts: list[str] | None = None
    tableConstraints: list[TableConstraint] | None = None
    retentionPeriod: str | None = None  # ISO 8601 duration


# --- pipeline side -------------------------------------------------------------------------------


@dataclass
class CreatePipelineService(Payload):
    SCHEMA: ClassVar[str] = "api/services/createPipelineService.json"
    SDK_MODEL: ClassVar[str] = "api.services.createPipelineService.CreatePipelineServiceRequest"
    name: str
    serviceType: str = "Dagster"
    description: str | None = None
    displayName: str | None = None
    connection: dict[str, Any] | None = None


@dataclass
class Task(Payload):
    SCHEMA: ClassVar[str] = "entity/data/pipeline.json#/definitions/task"
    SDK_MODEL: ClassVar[str] = "entity.data.pipeline.Task"
    name: str
    displayName: str | None = None
    description: str | None = None
    downstreamTasks: list[str] | None = None
    taskType: str | None = None
    sourceUrl: str | None = None


@dataclass
class CreatePipeline(Payload):
    SCHEMA: ClassVar[str] = "api/data/createPipeline.json"
    SDK_MODEL: ClassVar[str] = "api.data.createPipeline.CreatePipelineRequest"
    name: str
    service: str
    description: str | None = None
    displayName: str | None = None
    tasks: list[Task] | None = None
    owners: list[EntityReference | Ref] | None = None
    domains: list[str] | None = None
    sourceUrl: str | None = None
    pipelineLocation: str | None = None


@dataclass
class TaskStatus(Payload):
    SCHEMA: ClassVar[str] = "entity/data/pipeline.json#/definitions/taskStatus"
    SDK_MODEL: ClassVar[str] = "entity.data.pipeline.TaskStatus"
    name: str
    executionStatus: str  # Successful, Failed, Pending, Skipped
    startTime: int | None = None
    endTime: int | None = None


@dataclass
class PipelineStatus(Payload):
    SCHEMA: ClassVar[str] = "entity/data/pipeline.json#/definitions/pipelineStatus"
    SDK_MODEL: ClassVar[str] = "entity.data.pipeline.PipelineStatus"
    timestamp: int  # epoch milliseconds: the run's start (one status per run)
    executionStatus: str
    taskStatus: list[TaskStatus] | None = None


# --- lineage -------------------------------------------------------------------------------------


@dataclass
class ColumnLineage(Payload):
    SCHEMA: ClassVar[str] = "type/entityLineage.json#/definitions/columnLineage"
    SDK_MODEL: ClassVar[str] = "type.entityLineage.ColumnLineage"
    fromColumns: list[str]
    toColumn: str
    function: str | None = None


@dataclass
class LineageDetails(Payload):
    SCHEMA: ClassVar[str] = "type/entityLineage.json#/definitions/lineageDetails"
    SDK_MODEL: ClassVar[str] = "type.entityLineage.LineageDetails"
    pipeline: EntityReference | Ref | None = None
    columnsLineage: list[ColumnLineage] | None = None
    sqlQuery: str | None = None
    description: str | None = None
    source: str | None = None  # DbtLineage, PipelineLineage, ...


@dataclass
class EntitiesEdge(Payload):
    SCHEMA: ClassVar[str] = "type/entityLineage.json#/definitions/entitiesEdge"
    SDK_MODEL: ClassVar[str] = "type.entityLineage.EntitiesEdge"
    fromEntity: EntityReference | Ref
    toEntity: EntityReference | Ref
    description: str | None = None
    lineageDetails: LineageDetails | None = None


@dataclass
class AddLineage(Payload):
    SCHEMA: ClassVar[str] = "api/lineage/addLineage.json"
    SDK_MODEL: ClassVar[str] = "api.lineage.addLineage.AddLineageRequest"
    edge: EntitiesEdge


# --- data quality --------------------------------------------------------------------------------


@dataclass
class CreateTestSuite(Payload):
    SCHEMA: ClassVar[str] = "api/tests/createTestSuite.json"
    SDK_MODEL: ClassVar[str] = "api.tests.createTestSuite.CreateTestSuiteRequest"
    name: str
    basicEntityReference: str | None = None  # the table's FQN (1.x: executableEntityReference)
    description: str | None = None


@dataclass
class TestCaseParameterDefinition(Payload):
    SCHEMA: ClassVar[str] = "tests/testDefinition.json#/definitions/testCaseParameterDefinition"
    SDK_MODEL: ClassVar[str] = "tests.testDefinition.TestCaseParameterDefinition"
    name: str
    dataType: str = "STRING"
    description: str | None = None
    required: bool = False


@dataclass
class CreateTestDefinition(Payload):
    SCHEMA: ClassVar[str] = "api/tests/createTestDefinition.json"
    SDK_MODEL: ClassVar[str] = "api.tests.createTestDefinition.CreateTestDefinitionRequest"
    name: str
    description: str
    entityType: str  # TABLE or COLUMN
    testPlatforms: list[str] = field(default_factory=lambda: ["Other"])  # 1.x: DBT for dbt
    displayName: str | None = None
    parameterDefinition: list[TestCaseParameterDefinition] | None = None


@dataclass
class TestCaseParameterValue(Payload):
    SCHEMA: ClassVar[str] = "tests/testCase.json#/definitions/testCaseParameterValue"
    SDK_MODEL: ClassVar[str] = "tests.testCase.TestCaseParameterValue"
    name: str
    value: str


@dataclass
class CreateTestCase(Payload):
    SCHEMA: ClassVar[str] = "api/tests/createTestCase.json"
    SDK_MODEL: ClassVar[str] = "api.tests.createTestCase.CreateTestCaseRequest"
    name: str
    testDefinition: str
    entityLink: str
    testSuite: str | FqnRef  # 1.x only: 2.x puts a case in its table's basic test suite
    description: str | None = None
    displayName: str | None = None
    parameterValues: list[TestCaseParameterValue] | None = None


@dataclass
class TestResultValue(Payload):
    SCHEMA: ClassVar[str] = "tests/basic.json#/definitions/testResultValue"
    SDK_MODEL: ClassVar[str] = "tests.basic.TestResultValue"
    name: str
    value: str


@dataclass
class TestCaseResult(Payload):
    SCHEMA: ClassVar[str] = "tests/basic.json#/definitions/testCaseResult"
    SDK_MODEL: ClassVar[str] = "api.tests.createTestCaseResult.CreateTestCaseResult"
    timestamp: int  # epoch milliseconds of the Dagster check evaluation
    testCaseStatus: str  # Success, Failed, Aborted, Queued
    testResultValue: list[TestResultValue]  # required by 2.x, possibly empty
    result: str | None = None
    passedRows: int | None = None
    failedRows: int | None = None
    passedRowsPercentage: float | None = None
    failedRowsPercentage: float | None = None


PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    CreateClassification,
    CreateTag,
    CreateTeam,
    CreateDomain,
    CreateDataProduct,
    CreateDatabaseService,
    CreateDatabase,
    CreateDatabaseSchema,
    CreateTable,
    CreatePipelineService,
    CreatePipeline,
    PipelineStatus,
    AddLineage,
    CreateTestSuite,
    CreateTestDefinition,
    CreateTestCase,
    TestCaseResult,
)
