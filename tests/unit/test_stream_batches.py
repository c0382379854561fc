"""Typing a Kafka micro-batch by the contract, without a broker: the messages a batch read are
typed by the file readers' grammar, refused ones carry partition and offset, and in mode upsert
the newest message of a key wins and a tombstone deletes it."""

import json

import pyarrow as pa
import pytest
from pyiceberg import types as it

from mesh_assets.contract.model import Column, DataProduct, StreamSource
from mesh_assets.dbt.plugin import _without_empty_marker
from mesh_assets.ingest.stream import (
    Batch,
    Message,
    avro_schema,
    encode_value,
    format_offsets,
    parse_offsets,
    type_batch,
)


def product(mode: str = "append", value_format: str = "json") -> DataProduct:
    return DataProduct(
        domain="operations",
        name="events",
        version="1.0.0",
        path="operations/products/events.yaml",
        description="",
        owner="ops",
        columns=(
            Column("event_id", it.LongType(), required=True, classification="public", primary_key_position=1),
            Column("carrier", it.StringType(), required=True, classification="public"),
            Column("dep_delay", it.DoubleType(), classification="confidential"),
        ),
        rules=(),
        source={"format": "kafka"},
        stream=StreamSource(topic="t", key="event_id", mode=mode, value_format=value_format),
    )


def msg(offset: int, key, value, partition: int = 0) -> Message:
    payload = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return Message(partition, offset, str(key).encode(), payload)


def test_values_are_typed_and_refusals_name_partition_offset_and_column():
    batch = Batch(
        "t",
        {0: 0},
        {0: 6},
        [
            msg(0, 1, {"event_id": 1, "carrier": "AA", "dep_delay": 2}),
            msg(1, 2, {"carrier": "B6", "dep_delay": -1.5}),  # the key fills event_id
            msg(2, 3, b"{broken"),
            msg(3, 4, {"event_id": 4, "carrier": "DL", "dep_delay": "late"}),
            msg(4, 5, {"event_id": 5}),
            msg(5, 6, {"event_id": 6, "carrier": "UA", "gate": "B12"}),
        ],
    )
    typed = type_batch(product(), batch)
    assert typed.rows.to_pylist() == [
        {"event_id": 1, "carrier": "AA", "dep_delay": 2.0},
        {"event_id": 2, "carrier": "B6", "dep_delay": -1.5},
    ]
    assert typed.first_bad == "partition 0 offset 2: the value is not JSON (JSONDecodeError at character 1)"
    reasons = dict(zip(typed.bad.column("_line").to_pylist(), typed.bad.column("_reason").to_pylist()))
    assert reasons[3].startswith(
        "partition 0 offset 3: column dep_delay: value <confidential: 4 chars> is not"
    )
    assert reasons[4] == "partition 0 offset 4: column carrier: required value is missing"
    assert reasons[5] == (
        "partition 0 offset 5: field 'gate' is not declared in contract operations/products/events.yaml; "
        "add it to the contract (an optional column: earlier rows read null) or drop it from the events"
    )
    assert set(typed.bad.column("_source_file").to_pylist()) == {"kafka:t/0"}


def test_upsert_keeps_the_newest_message_per_key_and_tombstones_delete():
    batch = Batch(
        "t",
        {0: 0, 1: 0},
        {0: 4, 1: 2},
        [
            msg(0, 1, {"carrier": "AA"}),
            msg(1, 1, {"carrier": "UA"}),
            msg(2, 2, {"carrier": "B6"}),
            msg(3, 2, None),  # tombstone after the insert: deleted
            msg(0, 3, None, partition=1),
            msg(1, 3, {"carrier": "DL"}, partition=1),  # insert after the tombstone: kept
        ],
    )
    typed = type_batch(product("upsert"), batch)
    assert sorted((r["event_id"], r["carrier"]) for r in typed.rows.to_pylist()) == [(1, "UA"), (3, "DL")]
    assert typed.deletes == [2]
    assert typed.first_bad is None


def test_a_tombstone_in_append_mode_is_refused():
    typed = type_batch(product(), Batch("t", {0: 0}, {0: 1}, [msg(0, 1, None)]))
    assert typed.first_bad == (
        "partition 0 offset 0: a message without a value (a tombstone) deletes only in mode upsert with a key"
    )


def test_avro_values_are_typed_and_malformed_ones_refused_with_partition_and_offset():
    avro = product(value_format="avro")
    assert avro_schema(avro) == {
        "type": "record",
        "name": "events",
        "namespace": "operations",
        "fields": [
            {"name": "event_id", "type": "long"},
            {"name": "carrier", "type": "string"},
            {"name": "dep_delay", "type": ["null", "double"], "default": None},
        ],
    }
    good = encode_value(avro, {"event_id": 1, "carrier": "AA", "dep_delay": 2.5})
    batch = Batch(
        "t",
        {0: 0},
        {0: 5},
        [
            Message(0, 0, b"1", good),
            Message(0, 1, b"2", encode_value(avro, {"event_id": 2, "carrier": "B6", "dep_delay": None})),
            Message(0, 2, b"3", json.dumps({"event_id": 3, "carrier": "DL"}).encode()),  # JSON, not Avro
            Message(0, 3, b"4", good[:3]),  # cut short
            Message(0, 4, b"5", good + b"\x00"),  # a byte after the record
        ],
    )
    typed = type_batch(avro, batch)
    assert typed.rows.to_pylist() == [
        {"event_id": 1, "carrier": "AA", "dep_delay": 2.5},
        {"event_id": 2, "carrier": "B6", "dep_delay": None},
    ]
    reasons = dict(zip(typed.bad.column("_line").to_pylist(), typed.bad.column("_reason").to_pylist()))
    assert reasons == {
        2: "partition 0 offset 2: the value is not an Avro record of the contract's schema (IndexError)",
        3: "partition 0 offset 3: the value is not an Avro record of the contract's schema (EOFError)",
        4: "partition 0 offset 4: the value is not one Avro record of the contract's schema (1 byte after the record)",
    }
    assert set(typed.bad.column("_source_file").to_pylist()) == {"kafka:t/0"}


def test_offsets_text():
    assert parse_offsets("0:120,1:98") == {0: 120, 1: 98}
    assert format_offsets({1: 98, 0: 120}) == "0:120,1:98"
    with pytest.raises(ValueError, match=r"'1-98' is not PARTITION:OFFSET"):
        parse_offsets("0:120,1-98")


def test_dbt_duckdbs_marker_of_an_empty_model_is_no_row():
    marker = pa.table({"a": pa.array([None], pa.string()), "b": pa.array([None], pa.int64())})
    assert _without_empty_marker(marker).num_rows == 0
    real = pa.table({"a": pa.array([None], pa.string()), "b": pa.array([1], pa.int64())})
    assert _without_empty_marker(real).num_rows == 1
