"""Send: a plan's phases in concurrent batches through the client, resolving entity references
from the server's answers; every call is create-or-update, so exporting twice changes nothing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mesh_assets.openmetadata import models as m
from mesh_assets.openmetadata.client import OpenMetadataClient, OpenMetadataError, quote
from mesh_assets.openmetadata.plan import COLLECTIONS, Call, Plan

log = logging.getLogger("mesh_assets.openmetadata")


# --- sending -------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    calls: int = 0
    created: int = 0
    updated: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.by_endpoint.items()))
        return f"{self.calls} call(s): {self.created} created, {self.updated} updated or unchanged ({parts})"


class Exporter:
    """Sends a :class:`Plan`: phase after phase, each phase in concurrent batches."""

    def __init__(self, client: OpenMetadataClient, *, batch_size: int = 8):
        self.client = client
        self.batch_size = max(1, batch_size)
        self.ids: dict[tuple[str, str], str] = {}
        self.fqns: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def run(self, plan: Plan, *, time_series_only: bool = False) -> ExportReport:
        report = ExportReport(warnings=list(plan.warnings))
        with ThreadPoolExecutor(max_workers=self.batch_size, thread_name_prefix="openmetadata") as pool:
            for phase in plan.phases:
                calls = [c for c in phase.calls if c.time_series or not time_series_only]
                for start in range(0, len(calls), self.batch_size):
                    batch = calls[start : start + self.batch_size]
                    futures = [pool.submit(self._send, plan, call) for call in batch]
                    errors = []
                    for call, future in zip(batch, futures):
                        try:
                            status = future.result()
                        except OpenMetadataError as exc:
                            errors.append(exc)
                            continue
                        report.calls += 1
                        report.created += status == 201
                        report.updated += status != 201
                        endpoint = _endpoint(call)
                        report.by_endpoint[endpoint] = report.by_endpoint.get(endpoint, 0) + 1
                    if errors:
                        raise errors[0]
                log.info("openmetadata: phase %s done (%d call(s))", phase.name, len(calls))
        return report

    def _send(self, plan: Plan, call: Call) -> int:
        path = call.path
        if call.path_ref is not None:
            path = path.replace("{fqn}", quote(self._fqn(call.path_ref)))
        if call.ensure:
            collection = COLLECTIONS.get(call.register[0], call.register[0] + "s")
            found = self.client.get_by_name(collection, call.register[1], entity=call.entity)
            if found is not None:
                self._remember(call, found)
                return 200
            if call.payload is None:
                raise OpenMetadataError(
                    f"{call.entity} does not exist in OpenMetadata: create it "
                    "there (the exporter does not create users)",
                    status=404,
                    entity=call.entity,
                    field="owners",
                )
        body = plan.body(call, lambda ref: self._resolve(ref, call))
        status, answer = self.client.request(call.method, path, body, entity=call.entity)
        if isinstance(answer, dict):
            self._remember(call, answer)
        return status

    def _remember(self, call: Call, answer: Mapping) -> None:
        if call.register is None:
            return
        with self._lock:
            if answer.get("id"):
                self.ids[call.register] = answer["id"]
            if answer.get("fullyQualifiedName"):
                self.fqns[call.register] = answer["fullyQualifiedName"]

    def _fqn(self, ref: m.FqnRef) -> str:
        return self.fqns.get((ref.type, ref.fqn), ref.fqn)

    def _resolve(self, ref, call: Call):
        if isinstance(ref, m.FqnRef):
            return self._fqn(ref)
        key = (ref.type, ref.fqn)
        if key not in self.ids:
            found = self.client.get_by_name(
                COLLECTIONS.get(ref.type, ref.type + "s"), ref.fqn, entity=call.entity
            )
            if (found is None or not found.get("id")) and ref.type == "user":
                log.warning(
                    "openmetadata: %s: owner %s is not a user of OpenMetadata; exported without owner",
                    call.entity,
                    ref.fqn,
                )
                return None
            if found is None or not found.get("id"):
                raise OpenMetadataError(
                    f"{call.entity}: refers to {ref.type} {ref.fqn}, which OpenMetadata does "
                    "not know; export its domain first (`mesh openmetadata export`)",
                    status=404,
                    entity=call.entity,
                    field=ref.type,
                )
            with self._lock:
                self.ids[key] = found["id"]
        return m.EntityReference(id=self.ids[key], type=ref.type, fullyQualifiedName=ref.fqn).to_json()


def _endpoint(call: Call) -> str:
    parts = [p for p in call.path.split("/") if p not in ("", "v1", "{fqn}")]
    if parts[0] == "pipelines" and len(parts) > 1:
        return f"{parts[0]}/{parts[-1]}"
    return "/".join(parts[: {"dataQuality": 3, "services": 2}.get(parts[0], 1)])
