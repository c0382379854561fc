"""Validate exporter payloads with the official OpenMetadata SDK's generated pydantic models.

Runs in the SDK's own environment (``om_sdk.sdk_python()``), never in the project's.

``sdk_validate.py validate FILE`` reads a JSON file ``{"payloads": [{"kind", "entity", "models": [...], "body"}, ...], "workflows":
[...]}`` and prints one JSON report: the SDK's version, per kind the number of payloads and
the failures (entity, model, field, message), and ``forbid``: the models that refuse unknown
fields (``extra='forbid'``, as the server does).

A model is ``metadata.generated.schema.<path>.<Class>``. The SDK's top package is not
executed (its ``__init__`` loads the profiler); only the generated models are imported. Unknown
fields are caught twice: by the models that forbid them, and for any other model by comparing
the body with what the model kept (a field the model dropped is a failure, named by path).

``sdk_validate.py fields MODEL ...`` prints the fields of those models and of every model
they contain: ``{model: {"fields": {name: model of its value or null}, "required": [...],
"forbid": bool}}``,
what the fake server (``om_fake_server``) knows of the 2.x API.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import sys
import types
import typing
import warnings


def load_generated_models_only() -> None:
    spec = importlib.util.find_spec("metadata")
    package = types.ModuleType("metadata")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["metadata"] = package


def model(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(f"metadata.generated.schema.{module}"), name)


def dropped(sent, kept, where: str = "") -> list[str]:
    """Paths of the fields of ``sent`` that are missing from ``kept`` (the model's dump)."""
    out = []
    if isinstance(sent, dict) and isinstance(kept, dict):
        for key, value in sent.items():
            if key not in kept:
                out.append(f"{where}{key}")
            else:
                out += dropped(value, kept[key], f"{where}{key}.")
    elif isinstance(sent, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(sent, kept)):
            out += dropped(a, b, f"{where}{i}.")
    return out


def check(cls, body) -> list[tuple[str, str]]:
    """``(field, message)`` of each reason ``cls`` refuses ``body`` (empty when valid)."""
    from pydantic import ValidationError

    try:
        instance = cls.model_validate(body)
    except ValidationError as exc:
        return [(".".join(str(p) for p in e["loc"]) or "(body)", e["msg"]) for e in exc.errors()]
    kept = instance.model_dump(mode="json", exclude_unset=True, by_alias=True)
    if hasattr(instance, "root"):
        kept = kept if not isinstance(kept, dict) or "root" not in kept else kept["root"]
    return [(f, "not a field of the model (dropped)") for f in dropped(body, kept)]


def _name(cls) -> str:
    return f"{cls.__module__.removeprefix('metadata.generated.schema.')}.{cls.__qualname__}"


def _models_in(annotation) -> list:
    """The pydantic models an annotation holds (through lists, unions, ``Annotated`` and root
    models)."""
    from pydantic import BaseModel, RootModel

    if isinstance(annotation, type) and issubclass(annotation, RootModel):
        return _models_in(annotation.model_fields["root"].annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def fields(roots: list[str]) -> dict:
    out: dict = {}
    todo = [model(r) for r in roots]
    while todo:
        cls = todo.pop()
        if _name(cls) in out:
            continue
        forbid = cls.model_config.get("extra") == "forbid"
        entry = out[_name(cls)] = {"fields": {}, "required": [], "forbid": forbid}
        for name, info in cls.model_fields.items():
            key = info.alias or name
            inner = _models_in(info.annotation)
            entry["fields"][key] = _name(inner[0]) if len(inner) == 1 else None
            if info.is_required():
                entry["required"].append(key)
            if len(inner) == 1:
                todo.append(inner[0])
    return out


def main(command: str, *args: str) -> int:
    warnings.simplefilter("ignore")
    load_generated_models_only()
    if command == "fields":
        print(json.dumps(fields(list(args)), indent=1, sort_keys=True))
        return 0
    (path,) = args
    data = json.loads(open(path).read())
    report: dict = {"sdk": importlib.metadata.version("openmetadata-ingestion"), "kinds": {}, "forbid": {}}
    for item in data.get("payloads", []) + data.get("workflows", []):
        kind = report["kinds"].setdefault(item["kind"], {"payloads": 0, "failures": []})
        kind["payloads"] += 1
        for name in item["models"]:
            cls = model(name)
            report["forbid"][name] = cls.model_config.get("extra") == "forbid"
            for field, message in check(cls, item["body"]):
                kind["failures"].append(
                    {"entity": item["entity"], "model": name, "field": field, "message": message[:300]}
                )
    print(json.dumps(report, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
