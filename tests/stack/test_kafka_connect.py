"""The Apache Iceberg sink connector for Kafka Connect (the streaming benchmark's baseline)
against the stack's real broker, JDBC catalog and S3: it writes a topic into a table of the
mesh's catalog that Trino then reads whole, and no credential lands in its files or log."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType, LongType, NestedField, StringType

from mesh_assets.stack.kafka import bootstrap_servers
from mesh_assets.stack.kafka_connect import IcebergSink, SinkConfig

pytestmark = pytest.mark.stack

EVENTS = 3000


def test_iceberg_sink_connector_writes_a_topic_that_trino_reads(
    stack_layout, iceberg_catalog, trino_sql, namespace
):
    bootstrap = bootstrap_servers(stack_layout)
    name = f"sink-{uuid.uuid4().hex[:8]}"
    topic = f"test.{name}"
    table = f"{namespace}.events"
    iceberg_catalog.create_table(
        table,
        Schema(
            NestedField(1, "event_id", LongType(), required=False),
            NestedField(2, "carrier", StringType(), required=False),
            NestedField(3, "dep_delay", DoubleType(), required=False),
        ),
    )
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(EVENTS):
        value = {"event_id": i, "carrier": ("AA", "B6", "DL")[i % 3], "dep_delay": i / 2}
        producer.produce(topic, key=str(i).encode(), value=json.dumps(value).encode())
    assert producer.flush(30) == 0

    sink = IcebergSink(stack_layout, SinkConfig(name=name, topic=topic, table=table, commit_interval_ms=1000))
    try:
        with sink:
            deadline = time.monotonic() + 120
            count = 0
            while count < EVENTS and time.monotonic() < deadline:
                time.sleep(1)
                count = trino_sql(f'SELECT count(*) FROM iceberg."{namespace}".events')[0][0]
            assert sink.state() == "RUNNING"
    finally:
        for future in admin.delete_topics([topic, sink.config.control_topic]).values():
            future.result(timeout=30)
    rows = trino_sql(
        f"SELECT count(*), count(DISTINCT event_id), min(event_id), max(event_id), sum(dep_delay), "
        f"count_if(carrier = 'B6') FROM iceberg.\"{namespace}\".events"
    )
    assert rows == [[EVENTS, EVENTS, 0, EVENTS - 1, sum(i / 2 for i in range(EVENTS)), EVENTS // 3]]
    snapshot = iceberg_catalog.load_table(table).current_snapshot()
    summary = snapshot.summary.additional_properties
    assert summary["engine-name"] == "kafka-connect"
    assert summary["kafka.connect.task-id"] == f"{name}-0"
    # the credentials reached the worker through its environment: in no file it wrote
    secrets = [stack_layout.secret(n) for n in ("catalog-password", "s3-access-key", "s3-secret-key")]
    written = sink.log.read_text() + "".join(p.read_text() for p in sink.base.glob("*.properties"))
    assert not [s for s in secrets if s in written]
