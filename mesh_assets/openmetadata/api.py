"""The OpenMetadata API versions the exporter speaks, and everything that differs between them.

Payloads (:mod:`mesh_assets.openmetadata.models`) have the shape of the 2.x API, the one
servers run today (``openmetadata-ingestion`` 2.0.x). A server older than 1.5 speaks the 1.4
API; :data:`API_1` rewrites each body for it, here and nowhere else:

* ``owners`` (a list) is ``owner`` (one reference), ``domains`` (a list of names) is ``domain``;
* a table's test suite names its table in ``executableEntityReference`` (2.x:
  ``basicEntityReference``), a test case names its ``testSuite``, test definitions say ``DBT``
  where 2.x says ``dbt``;
* a test case result is ``PUT .../testCases/{fqn}/testCaseResult`` (2.x:
  ``POST .../testCases/testCaseResults/{fqn}``).

Both create a table's test suite with ``PUT .../testSuites/executable``
(:data:`TEST_SUITES_PATH`): 2.x servers also answer ``.../testSuites/basic``, but the official
SDK 2.0.7 (its dbt workflow, REST sink and Great Expectations action) still sends
``executable``, and the exporter sends what the SDK does.

:func:`negotiate` chooses the version from ``--api`` / ``OPENMETADATA_API_VERSION`` or, when
that is ``auto``, from the server's ``GET /api/v1/system/version``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CHOICES = ("auto", "1", "2")
VERSION_PATH = "/v1/system/version"
TEST_SUITES_PATH = "/v1/dataQuality/testSuites/executable"  # PUT: a table's test suite


class ApiVersionError(ValueError):
    """The API version cannot be chosen; the message says what to pass instead."""


@dataclass(frozen=True)
class ApiVersion:
    """One OpenMetadata API: where the endpoints that moved are, and how a body is shaped."""

    major: int
    result_method: str
    result_path: str  # ``{fqn}``: the test case's fully qualified name

    @property
    def label(self) -> str:
        return f"{self.major}.x"

    def body(self, payload, resolve: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        """The JSON body of ``payload`` for this API (references resolved by ``resolve``)."""
        body = payload.to_json(resolve)
        kind = type(payload).__name__
        if self.major >= 2:
            for name in _ONLY_IN_1.get(kind, ()):
                body.pop(name, None)
            return body
        return _as_v1(kind, body)


API_1 = ApiVersion(
    major=1,
    result_method="PUT",
    result_path="/v1/dataQuality/testCases/{fqn}/testCaseResult",
)
API_2 = ApiVersion(
    major=2,
    result_method="POST",
    result_path="/v1/dataQuality/testCases/testCaseResults/{fqn}",
)
DEFAULT = API_2

# 2.x list field -> the 1.x field that holds its one element
_SINGLE_IN_1 = {"owners": "owner", "domains": "domain"}
_RENAMED_IN_1 = {"CreateTestSuite": {"basicEntityReference": "executableEntityReference"}}
_VALUES_IN_1 = {("CreateTestDefinition", "testPlatforms"): {"dbt": "DBT"}}
_ONLY_IN_1 = {"CreateTestCase": ("testSuite",)}


def _as_v1(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    renamed = _RENAMED_IN_1.get(kind, {})
    for name, value in body.items():
        if name in _SINGLE_IN_1:
            if len(value) > 1:
                raise ApiVersionError(
                    f"{kind} {body.get('name', '')}: OpenMetadata 1.x takes one {_SINGLE_IN_1[name]}, "
                    f"not {len(value)}: export to a 2.x server (--api 2)"
                )
            if value:
                out[_SINGLE_IN_1[name]] = value[0]
            continue
        values = _VALUES_IN_1.get((kind, name))
        if values:
            value = [values.get(v, v) for v in value]
        out[renamed.get(name, name)] = value
    return out


def parse_version(text: str) -> tuple[int, int]:
    """``(major, minor)`` of a server version such as ``2.0.7`` or ``1.4.0-SNAPSHOT``."""
    found = re.match(r"\s*(\d+)\.(\d+)", text or "")
    if not found:
        raise ApiVersionError(f"OpenMetadata reported the version {text!r}, which is not MAJOR.MINOR[...]")
    return int(found.group(1)), int(found.group(2))


def negotiate(requested: str, server_version: Callable[[], str] | None) -> ApiVersion:
    """The API to speak: ``requested`` (``1``, ``2`` or ``auto``); ``auto`` asks the server
    (``server_version()``, the ``version`` of ``GET /api/v1/system/version``). A 2.x server
    gets 2.x, one up to 1.4 gets 1.x; 1.5 to 1.x changed the API in steps and is refused
    with what to pass instead."""
    requested = str(requested or "auto").strip().lower()
    if requested not in CHOICES:
        raise ApiVersionError(
            f"OpenMetadata API version {requested!r}: expected one of {', '.join(CHOICES)} "
            "(--api or OPENMETADATA_API_VERSION)"
        )
    if requested == "1":
        return API_1
    if requested == "2":
        return API_2
    if server_version is None:
        return DEFAULT
    reported = server_version()
    major, minor = parse_version(reported)
    if major >= 2:
        return API_2
    if (major, minor) <= (1, 4):
        return API_1
    raise ApiVersionError(
        f"OpenMetadata {reported} is between the 1.4 API and the 2.x API the exporter speaks: "
        "upgrade the server to 2.x, or choose one with --api 1 or --api 2 (OPENMETADATA_API_VERSION)"
    )
