"""Streaming products: a Kafka topic -> contract-typed micro-batches -> the file ingestion's
write path (audit branch, quarantine, checks, publish), exactly once.

The position of a product in its topic is part of the table: every batch's snapshot records,
in its summary, the next offset to read of each partition (``mesh.stream.offsets``) and where
the batch started (``mesh.stream.from``), in the same commit as its rows. A batch starts from
the offsets of main's newest snapshot that has them, never from offsets Kafka keeps for a
consumer group (none are committed there). So a consumer killed at any point re-reads exactly
what main does not hold yet: a batch that did not reach main is read again whole, one that
did is never read again. A rollback of the table moves the position back with the rows.

A message's value is one JSON object whose fields are named as the contract's columns (a field
the contract does not declare refuses the message, as a file with such a column is refused: a
new field is added to the contract first, as an optional column that earlier rows read as
null, then sent), or with ``valueFormat: avro``
one Avro record in binary encoding written with the schema :func:`avro_schema` derives from the
contract, without framing: no schema registry runs beside the mesh, so the contract is the
schema registry (a contract change changes the schema producers write with). Each value is turned into the
literal text the file readers parse, so the contract's strict grammar
(:mod:`mesh_assets.ingest.readers`) types streams and files alike. The message key fills the
contract's ``key`` column when the value lacks it. A message that is no JSON object, or whose
values break the contract, fails the batch naming topic, partition, offset and column, or
with ``quarantine: true`` goes to the quarantine table (``_source_file`` = ``kafka:<topic>/
<partition>``, ``_line`` = its offset).

``mode: upsert`` keeps one row per key: within a batch the newest message of a key wins; a
message without a value (a tombstone) deletes its key's row. pyiceberg's ``delete`` and
``upsert`` write copy-on-write (data files rewritten, no delete files), which every reader
(Trino, DuckDB, pyiceberg) reads alike.

A batch whose blocking checks fail stays on its audit branch and stops the product
(:func:`stop`: a table property naming the offsets and checks): no batch after it is read or
published until an operator runs ``mesh stream replay`` (read the same records again, after
fixing the contract or the data) or ``mesh stream skip`` (set them aside in the quarantine
table and move on).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING
from uuid import UUID

import fastavro
import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from pyiceberg import types as it
from pyiceberg.expressions import In

from mesh_assets.contract.model import DataProduct
from mesh_assets.iceberg.catalog import evolve_table
from mesh_assets.iceberg.commit import (
    CONTRACT_VERSION_PROPERTY,
    INPUTS_PROPERTY,
    RUN_ID_PROPERTY,
    commit_with_retry,
    transaction,
)
from mesh_assets.iceberg.wap import lineage_of, main_history, open_audit_branch, record_on_main
from mesh_assets.ingest.landing import IngestionError
from mesh_assets.ingest.quarantine import park, quarantine_schema
from mesh_assets.ingest.readers import judge
from mesh_assets.settings import kafka_bootstrap

if TYPE_CHECKING:
    from pyiceberg.table import Table

OFFSETS_PROPERTY = "mesh.stream.offsets"  # snapshot summary: {"topic", "next": {partition: offset}}
FROM_PROPERTY = "mesh.stream.from"  # snapshot summary: the offsets the batch started at
OPERATOR_PROPERTY = "mesh.stream.operator"  # snapshot summary: "replay|skip by <user> at <time>"
STOPPED_PROPERTY = "mesh.stream.stopped"  # table property: the rejected batch (JSON), while stopped
METADATA_TIMEOUT_S = 10.0


class StreamError(RuntimeError):
    """The stream cannot be read or moved as asked; the message says why and what to do."""


class StreamStopped(StreamError):
    """A batch of the product failed its blocking checks: nothing is read until an operator
    replays or skips it."""


# --- offsets ---------------------------------------------------------------------------------


def format_offsets(offsets: dict[int, int]) -> str:
    """``{0: 12, 1: 7}`` -> ``0:12,1:7`` (partition:next offset), the form the CLI takes."""
    return ",".join(f"{p}:{o}" for p, o in sorted(offsets.items())) or "(none)"


def parse_offsets(text: str) -> dict[int, int]:
    """``0:12,1:7`` -> ``{0: 12, 1: 7}``; ``ValueError`` naming the part that is wrong."""
    out = {}
    for part in text.split(","):
        p, sep, o = part.strip().partition(":")
        if not sep or not p.isdigit() or not o.isdigit():
            raise ValueError(
                f"offsets {text!r}: {part!r} is not PARTITION:OFFSET (whole numbers, e.g. 0:120,1:98)"
            )
        out[int(p)] = int(o)
    return out


def _summary(table: Table, snapshot_id: int) -> dict[str, str]:
    snapshot = table.snapshot_by_id(snapshot_id)
    return dict(snapshot.summary.additional_properties) if snapshot and snapshot.summary else {}


def offsets_at(table: Table, snapshot_id: int | None) -> dict[int, int]:
    """The stream position recorded by ``snapshot_id`` or its newest ancestor that has one
    (``{}``: the product never read its topic)."""
    for sid in lineage_of(table, snapshot_id):
        recorded = _summary(table, sid).get(OFFSETS_PROPERTY)
        if recorded:
            return {int(p): int(o) for p, o in json.loads(recorded)["next"].items()}
    return {}


def published_offsets(table: Table) -> dict[int, int]:
    """Where the next batch starts: the position of main's current snapshot."""
    history = main_history(table)
    return offsets_at(table, history[0]) if history else {}


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Batch:
    """The messages read from ``start`` (partition -> first offset read) up to ``end``
    (partition -> next offset to read), in partition order."""

    topic: str
    start: dict[int, int]
    end: dict[int, int]
    messages: list[Message] = field(default_factory=list)

    def describe(self) -> str:
        return f"topic {self.topic} offsets {format_offsets(self.start)} to {format_offsets(self.end)}"


def consumer(product: DataProduct) -> Consumer:
    """A consumer that never commits offsets to Kafka (the table holds the position)."""
    return Consumer(
        {
            "bootstrap.servers": kafka_bootstrap(),
            "group.id": f"mesh.{product.identifier}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )


def topic_partitions(client: Consumer, product: DataProduct) -> list[int]:
    """The partitions of the product's topic; :class:`StreamError` when it does not exist."""
    topic = product.stream.topic
    try:
        metadata = client.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise StreamError(
            f"{product.identifier}: Kafka at {kafka_bootstrap()} did not answer ({exc}); is it up "
            "(`mesh stack status`) and MESH_KAFKA_BOOTSTRAP right?"
        ) from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise StreamError(
            f"{product.identifier}: topic {topic} (contract {product.path}) does not exist on "
            f"{kafka_bootstrap()}; create it, or correct source.topic"
        )
    return sorted(found.partitions)


def end_offsets(product: DataProduct) -> dict[int, int]:
    """The next offset a producer will write, per partition (the high watermarks)."""
    client = consumer(product)
    try:
        return {
            p: client.get_watermark_offsets(
                TopicPartition(product.stream.topic, p), timeout=METADATA_TIMEOUT_S
            )[1]
            for p in topic_partitions(client, product)
        }
    finally:
        client.close()


def lag(product: DataProduct, position: dict[int, int]) -> int:
    """Messages in the topic beyond ``position`` (a partition never read counts from 0)."""
    return sum(max(0, end - position.get(p, 0)) for p, end in end_offsets(product).items())


def read_batch(product: DataProduct, start: dict[int, int]) -> Batch:
    """One micro-batch from ``start``: what the topic holds now, at most the contract's
    ``maxRecords`` messages and ``maxSeconds`` of reading."""
    stream = product.stream
    client = consumer(product)
    try:
        partitions = topic_partitions(client, product)
        high, begin = {}, {}
        for p in partitions:
            low, high[p] = client.get_watermark_offsets(
                TopicPartition(stream.topic, p), timeout=METADATA_TIMEOUT_S
            )
            begin[p] = start.get(p, low)
        pending = {p for p in partitions if begin[p] < high[p]}
        batch = Batch(stream.topic, dict(begin), dict(begin))
        if pending:
            client.assign(
                [
                    TopicPartition(stream.topic, p, begin[p] if p in start else OFFSET_BEGINNING)
                    for p in partitions
                ]
            )
        deadline = time.monotonic() + stream.max_seconds
        while pending and len(batch.messages) < stream.max_records and time.monotonic() < deadline:
            want = min(stream.max_records - len(batch.messages), 5000)
            for msg in client.consume(want, timeout=min(0.5, max(0.0, deadline - time.monotonic()))):
                if msg.error() is not None:
                    raise StreamError(
                        f"{product.identifier}: reading topic {stream.topic} failed: {msg.error()}"
                    )
                p = msg.partition()
                if p not in pending or msg.offset() < batch.end[p]:
                    continue  # beyond this batch's end (read ahead), or already seen
                batch.messages.append(Message(p, msg.offset(), msg.key(), msg.value()))
                batch.end[p] = msg.offset() + 1
                if batch.end[p] >= high[p]:
                    pending.discard(p)
                if len(batch.messages) >= stream.max_records:
                    break
        batch.messages.sort(key=lambda m: (m.partition, m.offset))
        return batch
    finally:
        client.close()


# --- typing ----------------------------------------------------------------------------------


def _literal(value) -> str | None:
    """A decoded value (JSON's, or Avro's with its logical types) as the literal text the
    contract's grammar reads."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    return json.dumps(value, sort_keys=True)  # an object or array: text for a string column


# Avro types of the contract's column types; any other column is an Avro string
_AVRO_TYPES = {
    it.BooleanType: "boolean",
    it.IntegerType: "int",
    it.LongType: "long",
    it.FloatType: "float",
    it.DoubleType: "double",
    it.StringType: "string",
    it.DateType: {"type": "int", "logicalType": "date"},
    it.TimeType: {"type": "long", "logicalType": "time-micros"},
    it.TimestampType: {"type": "long", "logicalType": "local-timestamp-micros"},
    it.TimestamptzType: {"type": "long", "logicalType": "timestamp-micros"},
    it.UUIDType: {"type": "string", "logicalType": "uuid"},
}


def avro_schema(product: DataProduct) -> dict:
    """The Avro schema a producer writes ``product``'s message values with (``valueFormat:
    avro``): one record named after the product, one field per column of the contract, in its
    order; a column that is not required is a union with null (default null)."""
    fields = []
    for column in product.columns:
        if isinstance(column.type, it.DecimalType):
            kind = {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": column.type.precision,
                "scale": column.type.scale,
            }
        else:
            kind = _AVRO_TYPES.get(type(column.type), "string")
        if column.required:
            fields.append({"name": column.name, "type": kind})
        else:
            fields.append({"name": column.name, "type": ["null", kind], "default": None})
    return {"type": "record", "name": product.name, "namespace": product.domain, "fields": fields}


def _parsed_avro_schema(product: DataProduct):
    return _parse_avro(json.dumps(avro_schema(product)))


@cache
def _parse_avro(schema: str):
    return fastavro.parse_schema(json.loads(schema))


def encode_value(product: DataProduct, value: dict) -> bytes:
    """``value`` as a message value of ``product``'s ``valueFormat`` (JSON text, or Avro binary
    with :func:`avro_schema`, no framing: no schema registry runs beside the mesh)."""
    if product.stream.value_format == "avro":
        out = io.BytesIO()
        fastavro.schemaless_writer(out, _parsed_avro_schema(product), value)
        return out.getvalue()
    return json.dumps(value).encode()


def decode_value(product: DataProduct, raw: bytes) -> tuple[dict | None, str | None]:
    """A message value decoded by the contract's ``valueFormat``: ``(fields, None)``, or
    ``(None, why)`` when it is not a JSON object / not one Avro record of :func:`avro_schema`."""
    if product.stream.value_format == "avro":
        buffer = io.BytesIO(raw)
        try:
            value = fastavro.schemaless_reader(buffer, _parsed_avro_schema(product), None)
        except (EOFError, ValueError, IndexError, UnicodeDecodeError, TypeError, OverflowError) as exc:
            return None, f"the value is not an Avro record of the contract's schema ({type(exc).__name__})"
        extra = len(raw) - buffer.tell()
        if extra:
            return None, (
                f"the value is not one Avro record of the contract's schema "
                f"({extra} byte{'s' if extra > 1 else ''} after the record)"
            )
        return value, None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"the value is not JSON ({type(exc).__name__} at character {getattr(exc, 'pos', '?')})"
    if not isinstance(value, dict):
        return None, f"the value is JSON {type(value).__name__}, not an object"
    return value, None


def _undeclared(product: DataProduct, value: dict, names: list[str]) -> str | None:
    """Why a value with a field the contract does not declare is refused (as a file with such a
    column is: the contract comes first), else None."""
    extra = [k for k in value if k not in names]
    if not extra:
        return None
    return (
        f"field '{extra[0]}' is not declared in contract {product.path}; add it to the contract "
        "(an optional column: earlier rows read null) or drop it from the events"
    )


@dataclass
class Typed:
    rows: pa.Table  # good rows, typed and ordered by the contract
    deletes: list  # upsert: typed keys whose newest message is a tombstone
    bad: pa.Table  # the quarantine's shape: the raw values as text, _reason, _line, _source_file
    first_bad: str | None  # "partition P offset O: column C: why" of the first refused message


def type_batch(product: DataProduct, batch: Batch) -> Typed:
    """The batch's messages typed by the contract (see the module's docstring)."""
    stream = product.stream
    names = [c.name for c in product.columns]
    texts: dict[str, list] = {n: [] for n in names}
    kept: list[Message] = []
    refused: list[tuple[Message, dict, str]] = []
    tombstones: list[Message] = []
    for msg in batch.messages:
        key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
        if msg.value is None:
            if stream.mode == "upsert" and key is not None:
                tombstones.append(msg)
            else:
                refused.append(
                    (
                        msg,
                        {},
                        "a message without a value (a tombstone) deletes only in mode upsert with a key",
                    )
                )
            continue
        value, why = decode_value(product, msg.value)
        if why is None:
            why = _undeclared(product, value, names)
        if why is not None:
            refused.append((msg, {}, why))
            continue
        if stream.key is not None and value.get(stream.key) is None:
            value[stream.key] = key
        for n in names:
            texts[n].append(_literal(value.get(n)))
        kept.append(msg)
    raw = pa.RecordBatch.from_arrays([pa.array(texts[n], pa.large_string()) for n in names], names=names)
    judged = judge(raw, product)
    good_positions = [i for i in range(len(kept)) if i not in set(judged.bad)]
    for position, reason in zip(judged.bad, judged.reasons, strict=True):
        refused.append((kept[position], {n: texts[n][position] for n in names}, reason))
    rows = pa.Table.from_batches([judged.good], schema=product.arrow_schema())
    deletes: list = []
    if stream.mode == "upsert":
        rows, deletes = _newest_per_key(product, rows, [kept[i] for i in good_positions], tombstones)
    refused.sort(key=lambda r: (r[0].partition, r[0].offset))
    bad = _quarantine_rows(product, batch, refused)
    first = None
    if refused:
        msg, _, reason = refused[0]
        first = f"partition {msg.partition} offset {msg.offset}: {reason}"
    return Typed(rows, deletes, bad, first)


def _newest_per_key(product: DataProduct, rows: pa.Table, messages: list[Message], tombstones: list[Message]):
    """Upsert: per key the newest message wins (a key always lands in one partition, so its
    offsets order its messages); keys whose newest message is a tombstone are deleted."""
    key = product.stream.key
    column = product.column(key)
    newest: dict = {}
    keys = rows.column(key).to_pylist()
    for i, (k, msg) in enumerate(zip(keys, messages, strict=True)):
        newest[k] = (msg.offset, msg.partition, i)
    for msg in tombstones:
        text = pa.array([msg.key.decode("utf-8", "replace")], pa.large_string())
        raw = pa.RecordBatch.from_arrays([text], names=[key])
        typed = judge(raw, _one_column(product, column)).good.column(0).to_pylist()
        if not typed:
            continue
        k = typed[0]
        if k not in newest or (msg.partition, msg.offset) > (newest[k][1], newest[k][0]):
            newest[k] = (msg.offset, msg.partition, None)
    keep = sorted(i for _, _, i in newest.values() if i is not None)
    deletes = [k for k, (_, _, i) in newest.items() if i is None]
    return rows.take(pa.array(keep, pa.int64())), deletes


def _one_column(product: DataProduct, column) -> DataProduct:
    return DataProduct(**{**product.__dict__, "columns": (column,)})


def _quarantine_rows(
    product: DataProduct, batch: Batch, refused: list[tuple[Message, dict, str]]
) -> pa.Table:
    schema = quarantine_schema(product)
    columns = {c.name: [texts.get(c.name) for _, texts, _ in refused] for c in product.columns}
    columns["_reason"] = [f"partition {m.partition} offset {m.offset}: {why}" for m, _, why in refused]
    columns["_line"] = [m.offset for m, _, _ in refused]
    columns["_source_file"] = [f"kafka:{batch.topic}/{m.partition}" for m, _, _ in refused]
    columns["_partition"] = [batch_key(batch)] * len(refused)
    return pa.table({n: pa.array(columns[n], schema.field(n).type) for n in schema.names}, schema=schema)


# --- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    table: Table
    batch: Batch
    rows_written: int
    rows_deleted: int
    rows_quarantined: int
    snapshot_id: int | None
    schema_changes: list[str]


def batch_key(batch: Batch) -> str:
    """The quarantine table's ``_partition`` of a batch: its topic and offset range."""
    return f"kafka:{batch.topic}@{format_offsets(batch.start)}..{format_offsets(batch.end)}"


def ingest_batch(product: DataProduct, catalog, *, branch: str, run_id: str | None = None) -> BatchResult:
    """Read one micro-batch from where main stands and commit it to ``branch`` with its offsets.

    Refused (:class:`StreamStopped`) while the product is stopped. A message that breaks the
    contract fails the batch (:class:`IngestionError` naming topic, partition, offset and
    column) unless the contract sets ``quarantine: true``."""
    table, schema_changes = evolve_table(catalog, product)
    stopped = stopped_reason(table, product)
    if stopped:
        raise StreamStopped(stopped)
    batch = read_batch(product, published_offsets(table))
    typed = type_batch(product, batch)
    if typed.first_bad and not product.quarantine:
        column = (
            typed.first_bad.split("column ", 1)[1].split(":", 1)[0] if "column " in typed.first_bad else None
        )
        raise IngestionError(
            f"{product.identifier}: topic {batch.topic} {typed.first_bad} (contract {product.path}"
            + (f", column {column}" if column else "")
            + "); nothing of the batch was written. Fix the producer, or set 'quarantine: true' "
            "in the contract to set such messages aside"
        )
    table = open_audit_branch(table, branch)
    properties = {
        OFFSETS_PROPERTY: json.dumps(
            {"topic": batch.topic, "next": {str(p): o for p, o in sorted(batch.end.items())}}
        ),
        FROM_PROPERTY: format_offsets(batch.start),
        CONTRACT_VERSION_PROPERTY: product.version,
        INPUTS_PROPERTY: "{}",
    }
    if run_id:
        properties[RUN_ID_PROPERTY] = run_id
    if product.quarantine and typed.bad.num_rows:
        park(catalog, product, typed.bad, batch_key(batch), properties, branch)

    def write(live: Table) -> None:
        _write(product, live, typed, properties, branch)

    committed = commit_with_retry(catalog, ".".join(table.name()), write)
    head = committed.table.metadata.refs[branch].snapshot_id
    return BatchResult(
        committed.table,
        batch,
        typed.rows.num_rows,
        len(typed.deletes),
        typed.bad.num_rows,
        head,
        schema_changes,
    )


def _write(product: DataProduct, table: Table, typed: Typed, properties: dict, branch: str) -> None:
    """One transaction on ``branch``: the deletes, the rows (appended, or upserted by key), and
    always a snapshot that carries ``properties`` (an empty append when nothing else changed)."""
    changed = False
    with transaction(table) as tx:
        if typed.deletes:
            tx.delete(In(product.stream.key, typed.deletes), snapshot_properties=properties, branch=branch)
            changed = True
        if typed.rows.num_rows:
            if product.stream.mode == "upsert":
                result = tx.upsert(
                    typed.rows, join_cols=[product.stream.key], branch=branch, snapshot_properties=properties
                )
                changed = changed or bool(result.rows_updated or result.rows_inserted)
            else:
                tx.append(typed.rows, snapshot_properties=properties, branch=branch)
                changed = True
        if not changed:
            tx.append(typed.rows.schema.empty_table(), snapshot_properties=properties, branch=branch)


def send(product: DataProduct, events: Iterable[tuple[str, dict | None]], *, partitions: int = 3) -> int:
    """Produce ``(key, value)`` events to the product's topic in its ``valueFormat`` (``None``: a
    tombstone), creating the topic first when it does not exist; returns the number sent. For
    demos and tests: real producers are the source systems."""
    from confluent_kafka import Producer  # noqa: PLC0415  librdkafka: only where events are sent
    from confluent_kafka.admin import AdminClient, NewTopic  # noqa: PLC0415  (same)

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap()})
    if product.stream.topic not in admin.list_topics(timeout=METADATA_TIMEOUT_S).topics:
        for future in admin.create_topics([NewTopic(product.stream.topic, partitions, 1)]).values():
            future.result(timeout=30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap(), "enable.idempotence": True, "linger.ms": 20})
    sent = 0
    for key, value in events:
        while True:
            try:
                producer.produce(
                    product.stream.topic,
                    key=key.encode(),
                    value=None if value is None else encode_value(product, value),
                )
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.5)
        sent += 1
    if producer.flush(60):
        raise StreamError(
            f"{product.identifier}: not every event reached topic {product.stream.topic} within 60 s"
        )
    return sent


# --- stopping, replaying, skipping -----------------------------------------------------------


def stop(table: Table, product: DataProduct, snapshot_id: int, branch: str, failed: Iterable[str]) -> str:
    """Stop the product after the batch at ``snapshot_id`` (on ``branch``) failed the blocking
    checks ``failed``; returns the message an operator reads."""
    start = _summary(table, snapshot_id).get(FROM_PROPERTY, "?")
    end = format_offsets(offsets_at(table, snapshot_id))
    record = {"from": start, "to": end, "snapshot": snapshot_id, "branch": branch, "checks": sorted(failed)}

    def apply(live: Table) -> None:
        with transaction(live) as tx:
            tx.set_properties({STOPPED_PROPERTY: json.dumps(record)})

    commit_with_retry(table.catalog, table.name(), apply)
    return _stopped_message(product, record)


def _stopped_message(product: DataProduct, record: dict) -> str:
    return (
        f"{product.identifier}: STOPPED: the batch of topic {product.stream.topic} from offsets "
        f"{record['from']} to {record['to']} failed blocking check(s) {', '.join(record['checks'])} "
        f"(snapshot {record['snapshot']} on branch {record['branch']}, unpublished); nothing after "
        f"offsets {record['from']} is read or published until an operator runs "
        f"`mesh stream replay {product.identifier} --to {record['from']}` (read the same messages "
        f"again, once the contract or the data is fixed) or `mesh stream skip {product.identifier} "
        f"--to {record['to']}` (set them aside in the quarantine table)"
    )


def stopped_reason(table: Table, product: DataProduct) -> str | None:
    """The operator's message while the product is stopped, else None."""
    raw = table.metadata.properties.get(STOPPED_PROPERTY)
    return _stopped_message(product, json.loads(raw)) if raw else None


@dataclass(frozen=True)
class Moved:
    product: str
    before: dict[int, int]
    after: dict[int, int]
    quarantined: int
    snapshot_id: int


def replay(product: DataProduct, catalog, to: dict[int, int], *, user: str) -> Moved:
    """Clear the stop and make the next batch start at ``to``. Going back past main's position
    is refused for an append product (its rows would be written twice: roll the table back
    instead, the position moves with it); an upsert product may replay anything."""
    table = catalog.load_table(product.table_identifier)
    before = published_offsets(table)
    back = {p: o for p, o in to.items() if o < before.get(p, 0)}
    if back and product.stream.mode != "upsert":
        raise StreamError(
            f"{product.identifier}: replaying from {format_offsets(to)} would write again the rows of "
            f"offsets before {format_offsets(before)} that main already holds (mode append). Roll the "
            f"table back with `mesh rollback {product.identifier} SNAPSHOT` (its stream position moves "
            "with it), or replay from the current position"
        )
    return _move(product, table, before, {**before, **to}, "replay", user, quarantined=0)


def skip(product: DataProduct, catalog, to: dict[int, int], *, user: str) -> Moved:
    """Set the messages from main's position up to ``to`` aside in the quarantine table (with
    topic, partition, offset and the operator), clear the stop and continue after them."""
    table = catalog.load_table(product.table_identifier)
    before = published_offsets(table)
    target = {**before, **to}
    behind = {p: o for p, o in target.items() if o < before.get(p, 0)}
    if behind:
        raise StreamError(
            f"{product.identifier}: cannot skip back to {format_offsets(behind)}: main already stands at "
            f"{format_offsets(before)}"
        )
    messages = _read_range(product, before, target)
    stamp = f"skip by {user} at {datetime.now(UTC).isoformat(timespec='seconds')}"
    refused = [
        (m, {}, f"skipped by an operator ({stamp}); value of {len(m.value or b'')} bytes not typed")
        for m in messages
    ]
    batch = Batch(product.stream.topic, before, target, messages)
    bad = _quarantine_rows(product, batch, refused)
    if bad.num_rows:
        park(catalog, product, bad, batch_key(batch), {OPERATOR_PROPERTY: stamp}, None)
    return _move(product, table, before, target, "skip", user, quarantined=bad.num_rows)


def _read_range(product: DataProduct, start: dict[int, int], end: dict[int, int]) -> list[Message]:
    client = consumer(product)
    out: list[Message] = []
    try:
        wanted = {p: (start.get(p, 0), o) for p, o in end.items() if o > start.get(p, 0)}
        if not wanted:
            return out
        client.assign([TopicPartition(product.stream.topic, p, s) for p, (s, _) in wanted.items()])
        deadline = time.monotonic() + 60
        pending = set(wanted)
        while pending and time.monotonic() < deadline:
            for msg in client.consume(1000, timeout=0.5):
                if msg.error() is not None:
                    raise StreamError(
                        f"{product.identifier}: reading topic {product.stream.topic} failed: {msg.error()}"
                    )
                p = msg.partition()
                if p in pending and msg.offset() < wanted[p][1]:
                    out.append(Message(p, msg.offset(), msg.key(), msg.value()))
                if p in pending and msg.offset() >= wanted[p][1] - 1:
                    pending.discard(p)
        if pending:
            raise StreamError(
                f"{product.identifier}: offsets up to {format_offsets({p: wanted[p][1] for p in pending})} "
                "could not be read within 60 s: are they beyond the end of the topic?"
            )
    finally:
        client.close()
    return sorted(out, key=lambda m: (m.partition, m.offset))


def _move(product, table: Table, before, after, verb: str, user: str, *, quarantined: int) -> Moved:
    at = datetime.now(UTC).isoformat(timespec="seconds")
    properties = {
        OFFSETS_PROPERTY: json.dumps(
            {"topic": product.stream.topic, "next": {str(p): o for p, o in sorted(after.items())}}
        ),
        FROM_PROPERTY: format_offsets(before),
        OPERATOR_PROPERTY: f"{verb} by {user} at {at}",
    }
    snapshot_id = record_on_main(table, properties)

    def clear(live: Table) -> None:
        if STOPPED_PROPERTY in live.metadata.properties:
            with transaction(live) as tx:
                tx.remove_properties(STOPPED_PROPERTY)

    commit_with_retry(table.catalog, table.name(), clear)
    return Moved(product.identifier, before, after, quarantined, snapshot_id)
