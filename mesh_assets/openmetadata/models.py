"""Typed payloads of the OpenMetadata REST API, as the exporter sends them.

Each class mirrors one request body of OpenMetadata's API; attribute names are the JSON field
names (camelCase, on purpose: a payload reads exactly like the documentation). ``SCHEMA`` names
the official JSON Schema the body is validated against in the tests, a path inside the
``json/schema/`` folder of ``org.open-metadata:openmetadata-spec`` :data:`SPEC_VERSION`
(``file.json`` or ``file.json#/definitions/name``).

Fields left ``None`` are not sent. A payload may hold :class:`Ref` / :class:`FqnRef`
placeholders for entities created earlier in the same export: the exporter replaces them by
the id (entity reference) or fully qualified name the server returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

# The newest openmetadata-spec on Maven Central (1.4.x API: `owner` is one entity reference,
# test results are PUT to /dataQuality/testCases/{fqn}/testCaseResult).
SPEC_VERSION = "1.4.0"
SPEC_GROUP, SPEC_ARTIFACT = "org.open-metadata", "openmetadata-spec"


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
    if isinstance(value, (list, tuple)):
        return [to_json(v, resolve) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v, resolve) for k, v in value.items() if v is not None}
    return value


class Payload:
    SCHEMA: ClassVar[str]

    def to_json(self, resolve: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        return to_json(self, resolve)


# --- shared types ------------------------------------------------------------------------------


@dataclass
class EntityReference(Payload):
    SCHEMA: ClassVar[str] = "type/entityReference.json"
    id: str
    type: str
    fullyQualifiedName: str | None = None
    name: str | None = None


@dataclass
class TagLabel(Payload):
    SCHEMA: ClassVar[str] = "type/tagLabel.json"
    tagFQN: str
    source: str = "Classification"
    labelType: str = "Automated"
    state: str = "Confirmed"


# --- classification, teams, domains --------------------------------------------------------------


@dataclass
class CreateClassification(Payload):
    SCHEMA: ClassVar[str] = "api/classification/createClassification.json"
    name: str
    description: str
    displayName: str | None = None
    mutuallyExclusive: bool | None = None


@dataclass
class CreateTag(Payload):
    SCHEMA: ClassVar[str] = "api/classification/createTag.json"
    name: str
    description: str
    classification: str


@dataclass
class CreateTeam(Payload):
    SCHEMA: ClassVar[str] = "api/teams/createTeam.json"
    name: str
    teamType: str = "Group"
    displayName: str | None = None
    description: str | None = None


@dataclass
class CreateDomain(Payload):
    SCHEMA: ClassVar[str] = "api/domains/createDomain.json"
    name: str
    description: str
    domainType: str  # Source-aligned, Consumer-aligned, Aggregate
    displayName: str | None = None
    owner: EntityReference | Ref | None = None


@dataclass
class CreateDataProduct(Payload):
    SCHEMA: ClassVar[str] = "api/domains/createDataProduct.json"
    name: str
    description: str
    domain: str | None = None
    displayName: str | None = None
    owner: EntityReference | Ref | None = None


# --- database side -------------------------------------------------------------------------------


@dataclass
class CreateDatabaseService(Payload):
    SCHEMA: ClassVar[str] = "api/services/createDatabaseService.json"
    name: str
    serviceType: str  # Trino, Iceberg, ...
    description: str | None = None
    displayName: str | None = None
    connection: dict[str, Any] | None = None  # {"config": {...}}; never credentials


@dataclass
class CreateDatabase(Payload):
    SCHEMA: ClassVar[str] = "api/data/createDatabase.json"
    name: str
    service: str
    description: str | None = None


@dataclass
class CreateDatabaseSchema(Payload):
    SCHEMA: ClassVar[str] = "api/data/createDatabaseSchema.json"
    name: str
    database: str
    description: str | None = None
    owner: EntityReference | Ref | None = None
    domain: str | None = None


@dataclass
class Column(Payload):
    SCHEMA: ClassVar[str] = "entity/data/table.json#/definitions/column"
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
    constraintType: str  # UNIQUE, PRIMARY_KEY, FOREIGN_KEY
    columns: list[str]


@dataclass
class CreateTable(Payload):
    SCHEMA: ClassVar[str] = "api/data/createTable.json"
    name: str
    databaseSchema: str
    columns: list[Column]
    tableType: str = "Iceberg"
    description: str | None = None
    displayName: str | None = None
    owner: EntityReference | Ref | None = None
    tags: list[TagLabel] | None = None
    domain: str | None = None
    dataProducts: list[str] | None = None
    tableConstraints: list[TableConstraint] | None = None
    retentionPeriod: str | None = None  # ISO 8601 duration


# --- pipeline side -------------------------------------------------------------------------------


@dataclass
class CreatePipelineService(Payload):
    SCHEMA: ClassVar[str] = "api/services/createPipelineService.json"
    name: str
    serviceType: str = "Dagster"
    description: str | None = None
    displayName: str | None = None
    connection: dict[str, Any] | None = None


@dataclass
class Task(Payload):
    SCHEMA: ClassVar[str] = "entity/data/pipeline.json#/definitions/task"
    name: str
    displayName: str | None = None
    description: str | None = None
    downstreamTasks: list[str] | None = None
    taskType: str | None = None
    sourceUrl: str | None = None


@dataclass
class CreatePipeline(Payload):
    SCHEMA: ClassVar[str] = "api/data/createPipeline.json"
    name: str
    service: str
    description: str | None = None
    displayName: str | None = None
    tasks: list[Task] | None = None
    owner: EntityReference | Ref | None = None
    domain: str | None = None
    sourceUrl: str | None = None
    pipelineLocation: str | None = None


@dataclass
class TaskStatus(Payload):
    SCHEMA: ClassVar[str] = "entity/data/pipeline.json#/definitions/taskStatus"
    name: str
    executionStatus: str  # Successful, Failed, Pending, Skipped
    startTime: int | None = None
    endTime: int | None = None


@dataclass
class PipelineStatus(Payload):
    SCHEMA: ClassVar[str] = "entity/data/pipeline.json#/definitions/pipelineStatus"
    timestamp: int  # epoch milliseconds: the run's start (one status per run)
    executionStatus: str
    taskStatus: list[TaskStatus] | None = None


# --- lineage -------------------------------------------------------------------------------------


@dataclass
class ColumnLineage(Payload):
    SCHEMA: ClassVar[str] = "type/entityLineage.json#/definitions/columnLineage"
    fromColumns: list[str]
    toColumn: str
    function: str | None = None


@dataclass
class LineageDetails(Payload):
    SCHEMA: ClassVar[str] = "type/entityLineage.json#/definitions/lineageDetails"
    pipeline: EntityReference | Ref | None = None
    columnsLineage: list[ColumnLineage] | None = None
    sqlQuery: str | None = None
    description: str | None = None
    source: str | None = None  # DbtLineage, PipelineLineage, ...


@dataclass
class EntitiesEdge(Payload):
    SCHEMA: ClassVar[str] = "type/entityLineage.json#/definitions/entitiesEdge"
    fromEntity: EntityReference | Ref
    toEntity: EntityReference | Ref
    description: str | None = None
    lineageDetails: LineageDetails | None = None


@dataclass
class AddLineage(Payload):
    SCHEMA: ClassVar[str] = "api/lineage/addLineage.json"
    edge: EntitiesEdge


# --- data quality --------------------------------------------------------------------------------


@dataclass
class CreateTestSuite(Payload):
    SCHEMA: ClassVar[str] = "api/tests/createTestSuite.json"
    name: str
    executableEntityReference: str | None = None
    description: str | None = None


@dataclass
class TestCaseParameterDefinition(Payload):
    SCHEMA: ClassVar[str] = "tests/testDefinition.json#/definitions/testCaseParameterDefinition"
    name: str
    dataType: str = "STRING"
    description: str | None = None
    required: bool = False


@dataclass
class CreateTestDefinition(Payload):
    SCHEMA: ClassVar[str] = "api/tests/createTestDefinition.json"
    name: str
    description: str
    entityType: str  # TABLE or COLUMN
    testPlatforms: list[str] = field(default_factory=lambda: ["Other"])
    displayName: str | None = None
    parameterDefinition: list[TestCaseParameterDefinition] | None = None


@dataclass
class TestCaseParameterValue(Payload):
    SCHEMA: ClassVar[str] = "tests/testCase.json#/definitions/testCaseParameterValue"
    name: str
    value: str


@dataclass
class CreateTestCase(Payload):
    SCHEMA: ClassVar[str] = "api/tests/createTestCase.json"
    name: str
    testDefinition: str
    entityLink: str
    testSuite: str | FqnRef
    description: str | None = None
    displayName: str | None = None
    parameterValues: list[TestCaseParameterValue] | None = None


@dataclass
class TestResultValue(Payload):
    SCHEMA: ClassVar[str] = "tests/basic.json#/definitions/testResultValue"
    name: str
    value: str


@dataclass
class TestCaseResult(Payload):
    SCHEMA: ClassVar[str] = "tests/basic.json#/definitions/testCaseResult"
    timestamp: int  # epoch milliseconds of the Dagster check evaluation
    testCaseStatus: str  # Success, Failed, Aborted, Queued
    result: str | None = None
    testResultValue: list[TestResultValue] | None = None
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
