"""A fake OpenMetadata on loopback (stdlib ``http.server`` in a thread).

It answers like OpenMetadata ``version`` (2.0.7 by default, or 1.4.0) for the calls the
exporter makes: ``GET /api/v1/system/version``; PUT is create-or-update, entities are stored
by fully qualified name (201 when created, 200 when updated, same id), referenced parents must
exist (404 otherwise), statuses and results are stored by timestamp, lineage edges by (from,
to). Each version has its own endpoints (:data:`ROUTES`; 2.x moved results to
``POST .../testCases/testCaseResults/{fqn}`` and takes a table's test suite at
``.../testSuites/basic`` as well as at ``.../testSuites/executable``, where the SDK 2.0.7 sends
it; an endpoint of the other version is a 404). The answers the SDK's client parses have the
server's shape: a test suite names its table by reference, a pipeline status is answered with
its pipeline. Every request is recorded (method, path, headers,
body); every body is validated as that version's server does (400 naming the field): a 1.x
body against the official 1.4 JSON Schema (``om_spec``), a 2.x body against the fields of the
SDK's 2.x models (``om2_spec``: an unknown field is ``Unrecognized field "x"``). Faults can be
injected: statuses to answer first, or ``HOLD``: a request left
unanswered, so that the client times out.

Timeouts without timing: a held request is never answered before the client gives up (it waits
for :meth:`FakeOpenMetadata.release`, not for a delay), and the requests the fake does answer
never time out in the client, however slow the machine: :meth:`FakeOpenMetadata.client_urlopen`
(installed by the ``fake_om`` fixture) gives them a timeout of ``ANSWERED_TIMEOUT_S`` and leaves
the client's own timeout to the held ones.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import om2_spec
import om_spec

BUILTIN_TEST_DEFINITIONS = {
    "columnValuesToBeNotNull",
    "columnValuesToBeUnique",
    "columnValuesToBeBetween",
    "columnValuesToBeInSet",
    "columnValuesToMatchRegex",
    "tableRowCountToBeBetween",
    "columnValueMeanToBeBetween",
    "columnValueMinToBeBetween",
    "columnValueMaxToBeBetween",
    "tableCustomSQLQuery",
}

# (method, path regex, body definition, entity type stored); the body definition is a 1.4 JSON
# Schema path for 1.x, an SDK model (om2_fields.json) for 2.x
_COMMON = [
    (
        "classifications",
        "api/classification/createClassification.json",
        "api.classification.createClassification.CreateClassificationRequest",
        "classification",
    ),
    ("tags", "api/classification/createTag.json", "api.classification.createTag.CreateTagRequest", "tag"),
    ("teams", "api/teams/createTeam.json", "api.teams.createTeam.CreateTeamRequest", "team"),
    ("domains", "api/domains/createDomain.json", "api.domains.createDomain.CreateDomainRequest", "domain"),
    (
        "dataProducts",
        "api/domains/createDataProduct.json",
        "api.domains.createDataProduct.CreateDataProductRequest",
        "dataProduct",
    ),
    (
        "services/databaseServices",
        "api/services/createDatabaseService.json",
        "api.services.createDatabaseService.CreateDatabaseServiceRequest",
        "databaseService",
    ),
    (
        "databases",
        "api/data/createDatabase.json",
        "api.data.createDatabase.CreateDatabaseRequest",
        "database",
    ),
    (
        "databaseSchemas",
        "api/data/createDatabaseSchema.json",
        "api.data.createDatabaseSchema.CreateDatabaseSchemaRequest",
        "databaseSchema",
    ),
    ("tables", "api/data/createTable.json", "api.data.createTable.CreateTableRequest", "table"),
    (
        "services/pipelineServices",
        "api/services/createPipelineService.json",
        "api.services.createPipelineService.CreatePipelineServiceRequest",
        "pipelineService",
    ),
    (
        "pipelines",
        "api/data/createPipeline.json",
        "api.data.createPipeline.CreatePipelineRequest",
        "pipeline",
    ),
    (
        "pipelines/(?P<fqn>[^/]+)/status",
        "entity/data/pipeline.json#/definitions/pipelineStatus",
        "entity.data.pipeline.PipelineStatus",
        "pipelineStatus",
    ),
    ("lineage", "api/lineage/addLineage.json", "api.lineage.addLineage.AddLineageRequest", "lineage"),
    (
        "dataQuality/testDefinitions",
        "api/tests/createTestDefinition.json",
        "api.tests.createTestDefinition.CreateTestDefinitionRequest",
        "testDefinition",
    ),
    (
        "dataQuality/testCases",
        "api/tests/createTestCase.json",
        "api.tests.createTestCase.CreateTestCaseRequest",
        "testCase",
    ),
]
ROUTES = {
    1: [("PUT", rf"/api/v1/{path}", schema, kind) for path, schema, _, kind in _COMMON]
    + [
        ("PUT", r"/api/v1/dataQuality/testSuites/executable", "api/tests/createTestSuite.json", "testSuite"),
        (
            "PUT",
            r"/api/v1/dataQuality/testCases/(?P<fqn>[^/]+)/testCaseResult",
            "tests/basic.json#/definitions/testCaseResult",
            "testCaseResult",
        ),
    ],
    2: [("PUT", rf"/api/v1/{path}", model, kind) for path, _, model, kind in _COMMON]
    + [
        (
            "PUT",
            rf"/api/v1/dataQuality/testSuites/{path}",
            "api.tests.createTestSuite.CreateTestSuiteRequest",
            "testSuite",
        )
        for path in ("executable", "basic")  # the SDK's (deprecated by the server) and its successor
    ]
    + [
        (
            "POST",
            r"/api/v1/dataQuality/testCases/testCaseResults/(?P<fqn>[^/]+)",
            "api.tests.createTestCaseResult.CreateTestCaseResult",
            "testCaseResult",
        ),
    ],
}
COLLECTIONS = {
    "teams": "team",
    "users": "user",
    "tables": "table",
    "pipelines": "pipeline",
    "domains": "domain",
    "dataProducts": "dataProduct",
    "databases": "database",
    "databaseSchemas": "databaseSchema",
    "dataQuality/testCases": "testCase",
    "dataQuality/testSuites": "testSuite",
    "classifications": "classification",
    "tags": "tag",
}


HOLD = "hold"  # a fault: leave the request unanswered (the client times out)
HOLD_HEADER = "X-Fake-Openmetadata-Hold"  # set by client_urlopen on a request claimed by a HOLD
ANSWERED_TIMEOUT_S = 60.0  # the client timeout of the requests the fake answers (they take ms)
HELD_MAX_S = 300.0  # a held request is dropped after this, should no test release it


def _fqn(*parts: str) -> str:
    return ".".join(f'"{p}"' if "." in p else p for p in parts)


@dataclass
class Recorded:
    method: str
    path: str  # as sent (percent-encoded)
    headers: dict
    body: object
    status: int = 0
    response: object = None


class NotFound(Exception):
    pass


@dataclass
class FakeOpenMetadata:
    token: str | None = None
    version: str = "2.0.7"  # what GET /api/v1/system/version answers; picks the API
    calls: list[Recorded] = field(default_factory=list)
    entities: dict[str, dict[str, dict]] = field(default_factory=dict)  # type -> fqn -> entity
    series: dict[str, dict[tuple, dict]] = field(default_factory=dict)  # kind -> key -> body
    schema_errors: list[str] = field(default_factory=list)
    faults: list[tuple[str, str, int | str, str | None]] = field(default_factory=list)
    held: list[Recorded] = field(default_factory=list)  # the requests left unanswered

    def __post_init__(self):
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._released = threading.Event()
        self._claimed = 0  # held requests sent by the client (they reach the server later)
        self.server = None

    # --- control ---------------------------------------------------------------------------

    def fail(self, method: str, path_regex: str, *answers, message: str | None = None) -> None:
        """Answer the next matching requests with these statuses (int), in order; ``HOLD``
        leaves one unanswered until :meth:`release` (the client times out after its own
        timeout). No delays: a test must not depend on how fast this machine is."""
        for answer in answers:
            if answer != HOLD and (not isinstance(answer, int) or isinstance(answer, bool)):
                raise TypeError(f"fault {answer!r}: an HTTP status (int) or HOLD")
            self.faults.append((method, path_regex, answer, message))

    def client_urlopen(self, urlopen):
        """``urllib.request.urlopen`` for the client under test (the ``fake_om`` fixture puts it
        in place). A request to this server that the next matching fault holds is marked
        (``HOLD_HEADER``) and keeps the client's timeout: nothing answers it, so it times out.
        Any other gets ``ANSWERED_TIMEOUT_S`` (or the client's, if longer): what the fake
        answers never times out, however loaded the machine. The fault is claimed here, when
        the request is sent, so concurrent requests cannot race for it."""

        def wrapped(request, *args, **kwargs):
            if (
                isinstance(request, urllib.request.Request)
                and self.server is not None
                and request.full_url.startswith(self.url + "/")
            ):
                with self._lock:
                    fault = self._next_fault(request.get_method(), request.full_url)
                    hold = fault is not None and fault[2] == HOLD
                    if hold:
                        self.faults.remove(fault)
                        self._claimed += 1
                if hold:
                    request.add_header(HOLD_HEADER, "1")
                elif isinstance(kwargs.get("timeout"), (int, float)):
                    kwargs["timeout"] = max(kwargs["timeout"], ANSWERED_TIMEOUT_S)
            return urlopen(request, *args, **kwargs)

        return wrapped

    def release(self, timeout_s: float = 60.0) -> list[Recorded]:
        """Wait until every held request has reached the server (the client may give up before
        the server even reads it), then drop them unanswered. Returns them."""
        with self._arrived:
            unclaimed = [f for f in self.faults if f[2] == HOLD]
            assert not unclaimed, (
                f"no request was held for {unclaimed}: not sent, or sent "
                "without client_urlopen (the fake_om fixture)"
            )
            if not self._arrived.wait_for(lambda: len(self.held) >= self._claimed, timeout_s):
                raise AssertionError(
                    f"{self._claimed - len(self.held)} held request(s) never "
                    f"reached the server in {timeout_s:g} s"
                )
            held = list(self.held)
        self._released.set()
        return held

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeOpenMetadata:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, answer = fake.handle(self.command, self.path, dict(self.headers), body)
                if status is None:
                    return  # held, then dropped: the client timed out long ago
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away (a timeout test)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # --- queries for tests -----------------------------------------------------------------

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def route(self, method: str, path: str):
        """``(method, regex, body definition, kind)`` of a request to this version, or None."""
        return _route(method, path, self.major)

    def put_calls(self, kind: str) -> list[Recorded]:
        """Recorded writes (PUT or POST) of one route kind (e.g. ``table``, ``lineage``)."""
        out = []
        for call in self.calls:
            route = self.route(call.method, call.path)
            if route and route[3] == kind:
                out.append(call)
        return out

    def by_id(self) -> dict[str, tuple[str, dict]]:
        return {e["id"]: (t, e) for t, es in self.entities.items() for e in es.values()}

    # --- OpenMetadata behaviour ------------------------------------------------------------

    def _next_fault(self, method: str, raw_path: str):
        return next(
            (f for f in self.faults if f[0] == method and re.fullmatch(f[1], urlsplit(raw_path).path)), None
        )

    def handle(self, method: str, raw_path: str, headers: dict, body) -> tuple[int | None, object]:
        record = Recorded(method, raw_path, headers, body)
        if any(k.lower() == HOLD_HEADER.lower() for k in headers):
            with self._arrived:
                self.calls.append(record)
                self.held.append(record)
                self._arrived.notify_all()
            self._released.wait(HELD_MAX_S)
            return None, None
        with self._lock:
            self.calls.append(record)
            fault = self._next_fault(method, raw_path)
            if fault is not None and fault[2] == HOLD:
                fault = None  # claimed by client_urlopen when the client sends the request
            if fault is not None:
                self.faults.remove(fault)
        if fault is not None:
            record.status = fault[2]
            record.response = {"code": fault[2], "message": fault[3] or "injected failure"}
            return record.status, record.response
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            record.status, record.response = 401, {"code": 401, "message": "Not authorized"}
            return record.status, record.response
        with self._lock:
            try:
                record.status, record.response = self._dispatch(method, raw_path, body)
            except NotFound as exc:
                record.status, record.response = 404, {"code": 404, "message": str(exc)}
        return record.status, record.response

    def _dispatch(self, method: str, raw_path: str, body):
        path = urlsplit(raw_path).path
        if (method, path) == ("GET", "/api/v1/system/version"):
            return 200, {"version": self.version, "revision": "fake", "timestamp": 1_761_550_000_000}
        if method == "GET":
            m = re.fullmatch(r"/api/v1/(.+)/name/([^/]+)", path)
            kind = COLLECTIONS.get(m.group(1)) if m else None
            entity = self.entities.get(kind, {}).get(unquote(m.group(2))) if kind else None
            if entity is None:
                raise NotFound(f"{kind or path} instance for {m.group(2) if m else path} not found")
            return 200, entity
        route = self.route(method, path)
        if route is None:
            return 404, {"code": 404, "message": "HTTP 404 Not Found"}
        if self.major >= 2:
            errors = om2_spec.errors(route[2], body)
            message = errors[0] if errors else None
        else:
            errors = om_spec.errors(route[2], body)
            message = f"[{errors[0].split(' at ', 1)[1]}]" if errors else None
        if errors:
            self.schema_errors += errors
            return 400, {"code": 400, "message": message}
        kind = route[3]
        params = re.fullmatch(route[1], path).groupdict()
        return getattr(self, f"_put_{kind}", self._put_entity)(kind, body, params)

    def _need(self, kind: str, fqn: str) -> dict:
        if fqn not in self.entities.get(kind, {}):
            raise NotFound(f"{kind} instance for {fqn} not found")
        return self.entities[kind][fqn]

    def _need_ref(self, ref: dict | None) -> None:
        if ref is not None and ref["id"] not in self.by_id():
            raise NotFound(f"{ref['type']} instance for {ref['id']} not found")

    def _store(self, kind: str, fqn: str, body: dict):
        store = self.entities.setdefault(kind, {})
        created = fqn not in store
        entity = {
            **body,
            "id": store[fqn]["id"] if not created else str(uuid.uuid4()),
            "fullyQualifiedName": fqn,
        }
        store[fqn] = entity
        return (201 if created else 200), entity

    def _put_entity(self, kind: str, body: dict, params: dict):
        parent = {
            "tag": ("classification", "classification"),
            "database": ("databaseService", "service"),
            "databaseSchema": ("database", "database"),
            "table": ("databaseSchema", "databaseSchema"),
            "pipeline": ("pipelineService", "service"),
        }.get(kind)
        if parent:
            parent_fqn = body[parent[1]]
            self._need(parent[0], parent_fqn)
            fqn = f"{parent_fqn}.{_fqn(body['name'])}"
        else:
            fqn = _fqn(body["name"])
        for owner in [body.get("owner")] if self.major < 2 else body.get("owners") or ():
            self._need_ref(owner)
        for domain in [body.get("domain")] if self.major < 2 else body.get("domains") or ():
            if domain:
                self._need("domain", domain)
        for product in body.get("dataProducts") or ():
            self._need("dataProduct", product)
        for column in body.get("columns") or ():
            for tag in column.get("tags") or ():
                self._need("tag", tag["tagFQN"])
        return self._store(kind, fqn, body)

    def _put_testSuite(self, kind, body, params):
        field = "basicEntityReference" if self.major >= 2 else "executableEntityReference"
        table = self._need("table", body[field])
        reference = {
            "id": table["id"],
            "type": "table",
            "name": table["name"],
            "fullyQualifiedName": body[field],
        }
        return self._store(kind, body[field] + ".testSuite", {**body, field: reference})

    def _put_testCase(self, kind, body, params):
        m = re.fullmatch(r"<#E::table::(.+?)(?:::columns::(.+))?>", body["entityLink"])
        table = self._need("table", m.group(1))
        if m.group(2) and m.group(2) not in {c["name"] for c in table["columns"]}:
            raise NotFound(f"column {m.group(2)} of {m.group(1)} not found")
        if self.major < 2:
            self._need("testSuite", body["testSuite"])
        if body["testDefinition"] not in BUILTIN_TEST_DEFINITIONS:
            self._need("testDefinition", body["testDefinition"])
        prefix = m.group(1) + (f".{_fqn(m.group(2))}" if m.group(2) else "")
        return self._store(kind, f"{prefix}.{_fqn(body['name'])}", body)

    def _put_pipelineStatus(self, kind, body, params):
        fqn = unquote(params["fqn"])
        pipeline = self._need("pipeline", fqn)
        tasks = {t["name"] for t in pipeline.get("tasks") or ()}
        for status in body.get("taskStatus") or ():
            if status["name"] not in tasks:
                return 400, {"code": 400, "message": f"Invalid task name {status['name']}"}
        code, _ = self._series(kind, (fqn, body["timestamp"]), body)
        service = self._need("pipelineService", pipeline["service"])
        answer = {
            "id": pipeline["id"],
            "name": pipeline["name"],
            "fullyQualifiedName": fqn,
            "service": {
                "id": service["id"],
                "type": "pipelineService",
                "fullyQualifiedName": pipeline["service"],
            },
            "pipelineStatus": body,
        }
        return code, answer

    def _put_testCaseResult(self, kind, body, params):
        fqn = unquote(params["fqn"])
        self._need("testCase", fqn)
        return self._series(kind, (fqn, body["timestamp"]), body)

    def _put_lineage(self, kind, body, params):
        edge = body["edge"]
        ids = self.by_id()
        for end in ("fromEntity", "toEntity"):
            if edge[end]["id"] not in ids:
                raise NotFound(f"{edge[end]['type']} instance for {edge[end]['id']} not found")
        pipeline = (edge.get("lineageDetails") or {}).get("pipeline")
        self._need_ref(pipeline)
        return self._series(kind, (edge["fromEntity"]["id"], edge["toEntity"]["id"]), body)

    def _series(self, kind, key, body):
        store = self.series.setdefault(kind, {})
        created = key not in store
        store[key] = body
        return (201 if created else 200), body


def _route(method: str, path: str, major: int):
    path = urlsplit(path).path
    for route in ROUTES[major]:
        if route[0] == method and re.fullmatch(route[1], path):
            return route
    return None
