"""A fake OpenMetadata on loopback (stdlib ``http.server`` in a thread).

It answers like OpenMetadata 1.4 for the calls the exporter makes: PUT is create-or-update,
entities are stored by fully qualified name (201 when created, 200 when updated, same id),
referenced parents must exist (404 otherwise), statuses and results are stored by timestamp,
lineage edges by (from, to). Every request is recorded (method, path, headers, body); every
body is validated against the official JSON Schema of its endpoint (400 naming the field when
invalid). Faults can be injected: statuses to answer first, or ``HOLD``: a request left
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

import om_spec as spec

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

# (method, path regex) -> (schema of the body, entity type stored)
ROUTES = [
    ("PUT", r"/api/v1/classifications", "api/classification/createClassification.json", "classification"),
    ("PUT", r"/api/v1/tags", "api/classification/createTag.json", "tag"),
    ("PUT", r"/api/v1/teams", "api/teams/createTeam.json", "team"),
    ("PUT", r"/api/v1/domains", "api/domains/createDomain.json", "domain"),
    ("PUT", r"/api/v1/dataProducts", "api/domains/createDataProduct.json", "dataProduct"),
    (
        "PUT",
        r"/api/v1/services/databaseServices",
        "api/services/createDatabaseService.json",
        "databaseService",
    ),
    ("PUT", r"/api/v1/databases", "api/data/createDatabase.json", "database"),
    ("PUT", r"/api/v1/databaseSchemas", "api/data/createDatabaseSchema.json", "databaseSchema"),
    ("PUT", r"/api/v1/tables", "api/data/createTable.json", "table"),
    (
        "PUT",
        r"/api/v1/services/pipelineServices",
        "api/services/createPipelineService.json",
        "pipelineService",
    ),
    ("PUT", r"/api/v1/pipelines", "api/data/createPipeline.json", "pipeline"),
    (
        "PUT",
        r"/api/v1/pipelines/(?P<fqn>[^/]+)/status",
        "entity/data/pipeline.json#/definitions/pipelineStatus",
        "pipelineStatus",
    ),
    ("PUT", r"/api/v1/lineage", "api/lineage/addLineage.json", "lineage"),
    ("PUT", r"/api/v1/dataQuality/testSuites/executable", "api/tests/createTestSuite.json", "testSuite"),
    ("PUT", r"/api/v1/dataQuality/testDefinitions", "api/tests/createTestDefinition.json", "testDefinition"),
    ("PUT", r"/api/v1/dataQuality/testCases", "api/tests/createTestCase.json", "testCase"),
    (
        "PUT",
        r"/api/v1/dataQuality/testCases/(?P<fqn>[^/]+)/testCaseResult",
        "tests/basic.json#/definitions/testCaseResult",
        "testCaseResult",
    ),
]
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

            do_GET = do_PUT = do_POST = _handle

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

    def put_calls(self, kind: str) -> list[Recorded]:
        """Recorded PUTs of one route kind (e.g. ``table``, ``lineage``)."""
        out = []
        for call in self.calls:
            route = _route(call.method, call.path)
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
        if method == "GET":
            m = re.fullmatch(r"/api/v1/(.+)/name/([^/]+)", path)
            kind = COLLECTIONS.get(m.group(1)) if m else None
            entity = self.entities.get(kind, {}).get(unquote(m.group(2))) if kind else None
            if entity is None:
                raise NotFound(f"{kind or path} instance for {m.group(2) if m else path} not found")
            return 200, entity
        route = _route(method, path)
        if route is None:
            return 405, {"code": 405, "message": f"no route {method} {path}"}
        errors = spec.errors(route[2], body)
        if errors:
            self.schema_errors += errors
            first = errors[0].split(" at ", 1)[1]
            return 400, {"code": 400, "message": f"[{first}]"}
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
        self._need_ref(body.get("owner"))
        if body.get("domain"):
            self._need("domain", body["domain"])
        for product in body.get("dataProducts") or ():
            self._need("dataProduct", product)
        for column in body.get("columns") or ():
            for tag in column.get("tags") or ():
                self._need("tag", tag["tagFQN"])
        return self._store(kind, fqn, body)

    def _put_testSuite(self, kind, body, params):
        self._need("table", body["executableEntityReference"])
        return self._store(kind, body["executableEntityReference"] + ".testSuite", body)

    def _put_testCase(self, kind, body, params):
        m = re.fullmatch(r"<#E::table::(.+?)(?:::columns::(.+))?>", body["entityLink"])
        table = self._need("table", m.group(1))
        if m.group(2) and m.group(2) not in {c["name"] for c in table["columns"]}:
            raise NotFound(f"column {m.group(2)} of {m.group(1)} not found")
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
        return self._series(kind, (fqn, body["timestamp"]), body)

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


def _route(method: str, path: str):
    path = urlsplit(path).path
    for route in ROUTES:
        if route[0] == method and re.fullmatch(route[1], path):
            return route
    return None
