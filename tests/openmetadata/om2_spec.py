"""What a 2.x OpenMetadata server accepts as request bodies, as the fake server checks it.

``om2_fields.json`` lists, for each request model of the 2.x API the exporter uses and every
model inside them, its fields (with the model of each nested value), the required ones and
whether unknown fields are refused. It is derived from the generated pydantic models of the
official SDK (``sdk_validate.py fields ...``, in the SDK's own environment);
``test_sdk_conformance.py`` regenerates it and fails when it no longer matches the SDK.

The messages read like the server's (Jackson): ``Unrecognized field "owner" (class
CreateTableRequest), not marked as ignorable``; ``[domains must not be null]``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

FIELDS_FILE = Path(__file__).with_name("om2_fields.json")


@functools.cache
def known() -> dict[str, dict]:
    return json.loads(FIELDS_FILE.read_text())


def errors(model: str, body, where: str = "") -> list[str]:
    """Why a 2.x server refuses ``body`` as ``model`` (empty when it accepts it): unknown
    fields of a model that refuses them, missing required fields, recursively."""
    spec = known()[model]
    out = []
    if isinstance(body, list):
        for i, item in enumerate(body):
            out += errors(model, item, f"{where}[{i}]")
        return out
    if not isinstance(body, dict):
        return [f"[{where or '(body)'} must be an object]"]
    for name, value in body.items():
        if name not in spec["fields"]:
            if spec["forbid"]:
                out.append(
                    f'Unrecognized field "{name}" (class {model.rsplit(".", 1)[1]}), not marked as ignorable'
                    + (f" (at {where})" if where else "")
                )
            continue
        inner = spec["fields"][name]
        if inner is not None and value is not None:
            out += errors(inner, value, f"{where}.{name}" if where else name)
    for name in spec["required"]:
        if body.get(name) is None:
            out.append(f"[{where + '.' if where else ''}{name} must not be null]")
    return out
