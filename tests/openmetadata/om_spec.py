"""The official OpenMetadata JSON Schemas, read from the ``openmetadata-spec`` jar on Maven
Central (fetched once by :func:`mesh_assets.tools.maven_artifact`, cached outside the repo), as
``jsonschema`` validators with ``$ref`` resolved across files by ``referencing``."""

from __future__ import annotations

import functools
import json
import zipfile
from urllib.parse import urljoin

import jsonschema
import referencing
import referencing.jsonschema

from mesh_assets.openmetadata.models import SPEC_ARTIFACT, SPEC_GROUP, SPEC_VERSION
from mesh_assets.tools import maven_artifact

BASE = "https://open-metadata.org/schema/"
PREFIX = "json/schema/"


def _python_patterns(node):
    """The schemas' regexes are Java's: drop the ``(?U)`` flag (Unicode character classes,
    which Python's ``re`` has by default and does not accept as an inline flag)."""
    if isinstance(node, dict):
        return {
            k: (v.replace("(?U)", "") if k == "pattern" and isinstance(v, str) else _python_patterns(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_python_patterns(v) for v in node]
    return node


@functools.cache
def registry_and_files() -> tuple[referencing.Registry, dict[str, dict]]:
    """Every schema of the jar, registered under its path URI and under its ``$id`` (some
    ``$id`` values do not match the file's folder; relative ``$ref`` follow the ``$id``)."""
    jar = maven_artifact(SPEC_GROUP, SPEC_ARTIFACT, SPEC_VERSION)
    files: dict[str, dict] = {}
    with zipfile.ZipFile(jar) as archive:
        for name in archive.namelist():
            if name.startswith(PREFIX) and name.endswith(".json"):
                files[name[len(PREFIX) :]] = _python_patterns(json.loads(archive.read(name)))
    resources: dict[str, referencing.Resource] = {
        BASE + path: referencing.jsonschema.DRAFT7.create_resource(contents)
        for path, contents in files.items()
    }
    for path, contents in files.items():  # a file's own path wins over another file's $id
        claimed = contents.get("$id") if isinstance(contents, dict) else None
        if claimed and claimed not in resources:
            resources[claimed] = resources[BASE + path]
    return referencing.Registry().with_resources(resources.items()), files


@functools.cache
def validator(schema_path: str) -> jsonschema.protocols.Validator:
    """A validator for ``file.json`` or ``file.json#/definitions/name`` of the spec."""
    registry, files = registry_and_files()
    path, _, pointer = schema_path.partition("#")
    if path not in files:
        raise KeyError(f"{schema_path}: not in openmetadata-spec {SPEC_VERSION}")
    contents = files[path]
    base = contents.get("$id") or BASE + path
    schema = {"$ref": urljoin(base, "#" + pointer)} if pointer else {"$ref": base}
    return jsonschema.Draft7Validator(schema, registry=registry, format_checker=jsonschema.FormatChecker())


def errors(schema_path: str, payload) -> list[str]:
    """Human-readable validation errors of ``payload`` (empty when valid)."""
    out = []
    for error in validator(schema_path).iter_errors(payload):
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        out.append(f"{schema_path} at {where}: {error.message[:300]}")
    return out
