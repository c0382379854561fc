"""Streaming products against the stack's real Kafka broker: exactly once across killed
consumers, a failing batch stops the product until it is replayed or skipped, malformed
messages are quarantined by topic, partition and offset, upserts and tombstones read alike in
Trino, DuckDB and pyiceberg.

Each test has its own topic and, but for the upsert test (the stack's catalog, read by
Trino), its own embedded MESH_HOME: the broker is the only service shared.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from mesh_assets import engine
from mesh_assets.iceberg.catalog import IcebergCatalog, open_catalog
from mesh_assets.iceberg.wap import publish
from mesh_assets.ingest.quarantine import quarantine_identifier
from mesh_assets.ingest.stream import (
    OFFSETS_PROPERTY,
    STOPPED_PROPERTY,
    encode_value,
    ingest_batch,
    published_offsets,
    replay,
    skip,
)
from mesh_assets.ingest.stream_assets import stream_asset, stream_sensor
from mesh_assets.quality.checks import contract_checks
from mesh_assets.settings import PAUSE_ENV, pause_marker
from mesh_assets.stack.kafka import bootstrap_servers
from mesh_assets.workspace import load_contract

pytestmark = pytest.mark.stack


def contract(
    folder: Path,
    topic: str,
    quarantine: bool = False,
    domain: str = "operations",
    extra: tuple[dict, ...] = (),
    **source,
) -> Path:
    doc = {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": f"urn:datamesh:{domain}:events",
        "version": "1.0.0",
        "status": "active",
        "name": "Events",
        "domain": domain,
        "dataProduct": "events",
        "description": {"purpose": "Test events."},
        "team": {"name": "operations-team"},
        "schema": [
            {
                "name": "events",
                "physicalType": "table",
                "description": "One row per event.",
                "properties": [
                    {
                        "name": "event_id",
                        "logicalType": "integer",
                        "physicalType": "bigint",
                        "required": True,
                        "primaryKey": True,
                        "primaryKeyPosition": 1,
                        "classification": "public",
                        "description": "Event id.",
                    },
                    {
                        "name": "carrier",
                        "logicalType": "string",
                        "physicalType": "string",
                        "required": True,
                        "classification": "public",
                        "description": "Carrier code.",
                        "quality": [
                            {
                                "type": "custom",
                                "engine": "great-expectations",
                                "severity": "error",
                                "implementation": {
                                    "type": "expect_column_values_to_match_regex",
                                    "kwargs": {"regex": "^[A-Z0-9]{2}$"},
                                },
                            }
                        ],
                    },
                    {
                        "name": "dep_delay",
                        "logicalType": "number",
                        "physicalType": "double",
                        "classification": "public",
                        "description": "Departure delay, minutes.",
                    },
                    *extra,
                ],
            }
        ],
        "customProperties": [
            {
                "property": "source",
                "value": {"format": "kafka", "topic": topic, "key": "event_id", "maxSeconds": 3, **source},
            },
            *([{"property": "quarantine", "value": True}] if quarantine else []),
        ],
    }
    path = folder / domain / "products" / "events.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def kafka(stack_layout, monkeypatch):
    bootstrap = bootstrap_servers(stack_layout)
    monkeypatch.setenv("MESH_KAFKA_BOOTSTRAP", bootstrap)
    return bootstrap


@pytest.fixture
def topic(kafka):
    name = f"test.events.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)]).values():
        future.result(timeout=30)
    yield name
    for future in admin.delete_topics([name]).values():
        future.result(timeout=30)


def produce(bootstrap: str, topic: str, events: list[tuple[object, object]]) -> None:
    """(key, value) pairs; a dict value is sent as JSON, bytes as they are, None as a tombstone."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in events:
        payload = json.dumps(value).encode() if isinstance(value, dict) else value
        producer.produce(topic, key=str(key).encode(), value=payload)
    assert producer.flush(30) == 0


def event(i: int, carrier: str = "AA", delay: float | None = 1.5) -> tuple[int, dict]:
    return i, {"event_id": i, "carrier": carrier, "dep_delay": delay}


def run_batch(product, instance=None):
    return dg.materialize(
        [stream_asset(product), contract_checks(product)],
        resources={"catalog": IcebergCatalog()},
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def failure_text(result) -> str:
    """The step failure's message with the messages of its causes."""
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def main_rows(product) -> list[dict]:
    table = open_catalog().load_table(product.table_identifier)
    return sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["event_id"])


# --- exactly once --------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from mesh_assets.iceberg.catalog import IcebergCatalog
    from mesh_assets.ingest.stream_assets import stream_asset, stream_sensor
    from mesh_assets.quality.checks import contract_checks
    from mesh_assets.workspace import load_contract

    product = load_contract(sys.argv[1])
    result = dg.materialize(
        [stream_asset(product), contract_checks(product)],
        resources={"catalog": IcebergCatalog()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    sys.exit(0 if result.success else 3)
    """
)


def _child(path: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path)], env=env, stdout=subprocess.DEVNULL)


def _kill_at(path: Path, checkpoint: str, env: dict) -> None:
    """Run one batch in a child process and SIGKILL it when it reaches ``checkpoint``."""
    marker = pause_marker(checkpoint)
    marker.unlink(missing_ok=True)
    child = _child(path, {**env, PAUSE_ENV: checkpoint})
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert child.poll() is None, f"the batch ended (exit {child.returncode}) before {checkpoint}"
        assert time.monotonic() < deadline, f"no {checkpoint} within 60 s"
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()


def test_killed_consumers_lose_and_duplicate_nothing(mesh_home, tmp_path, kafka, topic):
    """300 events, batches of 40. The consumer (a process running the product's Dagster asset
    and checks) is killed after writing its audit branch (before the checks), after publishing
    (before its run ended), then three times at a moment drawn by a seeded random generator
    (``MESH_KILL_SEED`` replays a failing draw); then batches run to the end of the topic. Main
    holds every event exactly once, and its recorded position is the end of the topic."""
    path = contract(tmp_path, topic, maxRecords=40)
    product = load_contract(path)
    produce(kafka, topic, [event(i) for i in range(300)])
    env = {**os.environ}
    _kill_at(path, "audit_written", env)  # unpublished: the same batch is read again
    _kill_at(path, "after_publish", env)  # published: never read again
    seed = int(os.environ.get("MESH_KILL_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    kills = []
    for _ in range(3):  # killed at random moments: importing, reading, writing, checking, publishing
        child = _child(path, env)
        delay = rng.uniform(0.5, 5.0)
        time.sleep(delay)
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
        kills.append(f"{delay:.2f}s->{child.returncode}")
    for _ in range(10):
        table = open_catalog().load_table(product.table_identifier)
        if sum(published_offsets(table).values()) == 300:
            break
        assert run_batch(product).success
    rows = main_rows(product)
    ids = [r["event_id"] for r in rows]
    # none missing, none twice (MESH_KILL_SEED reproduces the kill moments)
    assert ids == list(range(300)), f"seed {seed}, kills {kills}: {len(ids)} rows, {len(set(ids))} ids"
    table = open_catalog().load_table(product.table_identifier)
    summary = table.current_snapshot().summary.additional_properties
    recorded = json.loads(summary[OFFSETS_PROPERTY])
    assert recorded["topic"] == topic and sum(recorded["next"].values()) == 300


# --- a failing batch stops the product; replay and skip ----------------------------------------------


def test_failing_batch_stops_until_skipped_or_replayed(mesh_home, tmp_path, kafka, topic):
    path = contract(tmp_path, topic, maxRecords=1000)
    product = load_contract(path)
    produce(kafka, topic, [event(i) for i in range(10)])
    assert run_batch(product).success
    assert len(main_rows(product)) == 10
    good = published_offsets(open_catalog().load_table(product.table_identifier))

    produce(kafka, topic, [event(10), event(11, carrier="lower"), event(12)])
    result = run_batch(product)
    assert not result.success
    message = failure_text(result)
    before = ",".join(f"{p}:{o}" for p, o in sorted(good.items()))
    assert f"operations.events: STOPPED: the batch of topic {topic} from offsets {before} to " in message
    assert "failed blocking check(s) match_regex_carrier" in message
    assert f"mesh stream replay operations.events --to {before}" in message
    table = open_catalog().load_table(product.table_identifier)
    assert STOPPED_PROPERTY in table.metadata.properties
    assert len(main_rows(product)) == 10  # not published
    stopped_to = json.loads(table.metadata.properties[STOPPED_PROPERTY])["to"]

    # stopped: a new run reads nothing, and says why
    produce(kafka, topic, [event(13)])
    again = run_batch(product)
    assert not again.success
    assert "STOPPED" in failure_text(again)
    assert published_offsets(open_catalog().load_table(product.table_identifier)) == good

    # replay from the same position: the same batch is read again and fails again (the data is bad)
    replay(product, open_catalog(), good, user="ops")
    assert STOPPED_PROPERTY not in open_catalog().load_table(product.table_identifier).metadata.properties
    assert not run_batch(product).success

    # skip the rejected messages: quarantined with topic, partition and offset; the rest flows
    to = {int(p): int(o) for p, o in (x.split(":") for x in stopped_to.split(","))}
    moved = skip(product, open_catalog(), to, user="ops")
    assert moved.quarantined == sum(to.values()) - sum(good.values())
    parked = open_catalog().load_table(quarantine_identifier(product)).scan().to_arrow().to_pylist()
    assert {r["_source_file"] for r in parked} <= {f"kafka:{topic}/0", f"kafka:{topic}/1"}
    assert all("skipped by an operator" in r["_reason"] and "skip by ops" in r["_reason"] for r in parked)
    assert run_batch(product).success
    ids = [r["event_id"] for r in main_rows(product)]
    skipped = {r["_line"] for r in parked}
    assert len(ids) == len(set(ids)) and 13 in ids and 11 not in ids
    assert len(ids) + len(parked) == 14 and len(skipped) == len(parked)


def test_malformed_messages_are_quarantined_with_their_offsets(mesh_home, tmp_path, kafka, topic):
    path = contract(tmp_path, topic, maxRecords=1000, quarantine=True)
    product = load_contract(path)
    producer = Producer({"bootstrap.servers": kafka})
    for key, value in [
        (1, json.dumps({"event_id": 1, "carrier": "AA"})),
        (2, "not json"),
        (3, json.dumps([1, 2])),
        (4, json.dumps({"event_id": 4, "carrier": "B6", "dep_delay": "late"})),
        (5, json.dumps({"carrier": "DL", "dep_delay": 3})),  # the key fills event_id
    ]:
        producer.produce(topic, key=str(key).encode(), value=value.encode(), partition=0)
    producer.flush(30)
    assert run_batch(product).success
    assert [(r["event_id"], r["carrier"]) for r in main_rows(product)] == [(1, "AA"), (5, "DL")]
    parked = open_catalog().load_table(quarantine_identifier(product)).scan().to_arrow().to_pylist()
    reasons = {r["_line"]: (r["_source_file"], r["_reason"]) for r in parked}
    assert reasons[1] == (
        f"kafka:{topic}/0",
        "partition 0 offset 1: the value is not JSON (JSONDecodeError at character 0)",
    )
    assert reasons[2] == (f"kafka:{topic}/0", "partition 0 offset 2: the value is JSON list, not an object")
    assert reasons[3][1] == (
        "partition 0 offset 3: column dep_delay: value 'late' is not a valid double "
        "(a finite decimal number; nan and infinities need allowNonFinite: true on the column)"
    )

    # without quarantine the batch fails, naming topic, partition, offset and column
    strict = load_contract(contract(tmp_path / "strict", topic, maxRecords=1000))
    open_catalog().drop_table(product.table_identifier)
    result = run_batch(strict)
    assert not result.success
    message = failure_text(result)
    assert f"operations.events: topic {topic} partition 0 offset 1: the value is not JSON" in message


# --- upserts and tombstones ------------------------------------------------------------------------


def test_upserts_and_tombstones_read_alike_in_trino_duckdb_and_pyiceberg(
    mesh_home, tmp_path, kafka, topic, iceberg_catalog, trino_sql, namespace
):
    """The same keyed topic into the stack's catalog (read by Trino) and the embedded one (read
    by DuckDB's own Iceberg reader): the newest message of a key wins, a tombstone deletes."""
    produce(kafka, topic, [event(i) for i in range(1, 7)])
    produce(
        kafka,
        topic,
        [
            event(2, "UA"),
            (3, None),
            (5, None),
            event(5, "B6", 7.0),
            event(6, "WN"),
            (6, None),
            event(7, "9E"),
        ],
    )
    expected = [(1, "AA"), (2, "UA"), (4, "AA"), (5, "B6"), (7, "9E")]
    embedded = load_contract(contract(tmp_path, topic, mode="upsert", maxRecords=6))
    stacked = load_contract(contract(tmp_path, topic, mode="upsert", maxRecords=6, domain=namespace))
    for product, catalog in ((embedded, open_catalog()), (stacked, iceberg_catalog)):
        for run in ("a", "b", "c"):  # 13 messages in batches of at most 6
            branch = f"audit-{run}"
            result = ingest_batch(product, catalog, branch=branch)
            publish(result.table, branch)
        table = catalog.load_table(product.table_identifier)
        assert sum(published_offsets(table).values()) == 13
        rows = sorted((r["event_id"], r["carrier"]) for r in table.scan().to_arrow().to_pylist())
        assert rows == expected, f"pyiceberg on {product.identifier}"

    trino = trino_sql(f'SELECT event_id, carrier FROM iceberg."{namespace}".events ORDER BY 1')
    assert [tuple(r) for r in trino] == expected

    table = open_catalog().load_table(embedded.table_identifier)
    con = engine.connect()
    assert engine.load_iceberg_extension(con)
    duck = con.execute(
        f"SELECT event_id, carrier FROM iceberg_scan('{table.metadata_location}') ORDER BY 1"
    ).fetchall()
    assert duck == expected


# --- the sensor ------------------------------------------------------------------------------------


def test_sensor_requests_a_batch_while_the_topic_is_ahead_and_nothing_while_stopped(
    mesh_home, tmp_path, kafka, topic
):
    product = load_contract(contract(tmp_path, topic, maxRecords=1000))
    sensor = stream_sensor(product)
    instance = dg.DagsterInstance.ephemeral()

    defs = dg.Definitions(
        assets=[stream_asset(product)],
        asset_checks=[contract_checks(product)],
        sensors=[sensor],
        resources={"catalog": IcebergCatalog()},
    )

    def tick():
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))

    produce(kafka, topic, [event(1), event(2)])
    requests = tick().run_requests
    assert len(requests) == 1
    assert requests[0].tags["mesh/stream"] == "operations.events"
    assert requests[0].asset_selection == [dg.AssetKey(["operations", "events"])]
    assert run_batch(product, instance).success
    assert tick().skip_message == f"operations.events: main holds topic {topic} up to its end"

    produce(kafka, topic, [event(3, carrier="bad")])
    assert len(tick().run_requests) == 1
    assert not run_batch(product, instance).success
    skipped = tick()
    assert not skipped.run_requests
    assert skipped.skip_message.startswith("operations.events: STOPPED: the batch of topic")


# --- Avro values -----------------------------------------------------------------------------------


def test_avro_values_are_ingested_and_malformed_ones_quarantined_with_their_offsets(
    mesh_home, tmp_path, kafka, topic
):
    product = load_contract(contract(tmp_path, topic, quarantine=True, valueFormat="avro", maxRecords=1000))
    producer = Producer({"bootstrap.servers": kafka})
    values = [
        encode_value(product, {"event_id": 1, "carrier": "AA", "dep_delay": 2.5}),
        json.dumps({"event_id": 2, "carrier": "B6"}).encode(),  # a JSON producer on an Avro topic
        encode_value(product, {"event_id": 3, "carrier": "DL", "dep_delay": None}),
        encode_value(product, {"event_id": 4, "carrier": "UA", "dep_delay": 1.0})[:4],  # cut short
    ]
    for i, value in enumerate(values, start=1):
        producer.produce(topic, key=str(i).encode(), value=value, partition=1)
    assert producer.flush(30) == 0
    assert run_batch(product).success
    assert [(r["event_id"], r["carrier"], r["dep_delay"]) for r in main_rows(product)] == [
        (1, "AA", 2.5),
        (3, "DL", None),
    ]
    parked = open_catalog().load_table(quarantine_identifier(product)).scan().to_arrow().to_pylist()
    assert sorted((r["_source_file"], r["_line"], r["_reason"]) for r in parked) == [
        (
            f"kafka:{topic}/1",
            1,
            "partition 1 offset 1: the value is not an Avro record of the contract's schema (IndexError)",
        ),
        (
            f"kafka:{topic}/1",
            3,
            "partition 1 offset 3: the value is not an Avro record of the contract's schema (EOFError)",
        ),
    ]


# --- schema evolution through the contract -----------------------------------------------------------

GATE = {
    "name": "gate",
    "logicalType": "string",
    "physicalType": "string",
    "classification": "public",
    "description": "Departure gate (added in version 1.1.0).",
}


def test_a_new_event_field_is_refused_until_the_contract_adds_it_then_earlier_rows_read_null(
    mesh_home, tmp_path, kafka, topic
):
    before = load_contract(contract(tmp_path, topic, quarantine=True, maxRecords=1000))
    produce(kafka, topic, [event(i) for i in range(1, 4)])
    produce(kafka, topic, [(4, {"event_id": 4, "carrier": "AA", "dep_delay": 1.0, "gate": "B12"})])
    assert run_batch(before).success
    assert [r["event_id"] for r in main_rows(before)] == [1, 2, 3]
    parked = open_catalog().load_table(quarantine_identifier(before)).scan().to_arrow().to_pylist()
    assert [r["_reason"].split(": ", 1)[1] for r in parked] == [
        f"field 'gate' is not declared in contract {before.path}; add it to the contract (an optional "
        "column: earlier rows read null) or drop it from the events"
    ]

    after = load_contract(contract(tmp_path, topic, quarantine=True, extra=(GATE,), maxRecords=1000))
    produce(kafka, topic, [(5, {"event_id": 5, "carrier": "DL", "dep_delay": 2.0, "gate": "C3"}), event(6)])
    result = run_batch(after)
    assert result.success
    materialization = result.asset_materializations_for_node("ingest_events")[0]
    assert materialization.metadata["mesh/schema_changes"].value == [
        "+ column gate (string, optional): additive"
    ]
    rows = [(r["event_id"], r["gate"]) for r in main_rows(after)]
    assert rows == [(1, None), (2, None), (3, None), (5, "C3"), (6, None)]
    table = open_catalog().load_table(after.table_identifier)
    assert [f.name for f in table.schema().fields] == ["event_id", "carrier", "dep_delay", "gate"]
