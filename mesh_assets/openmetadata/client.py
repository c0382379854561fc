"""A small HTTP client for OpenMetadata's REST API: stdlib only, JSON in and out.

* Auth: the bot's JWT as a bearer token, read from ``OPENMETADATA_JWT_TOKEN`` or the file named
  by ``OPENMETADATA_JWT_TOKEN_FILE`` (:func:`mesh_assets.settings.secret`). The token lives in
  one private attribute and the request header; it is never logged, never part of an exception
  message (any echo of it by the server is masked) and never in a payload.
* Retries: 5xx, 429, timeouts and dropped connections are retried with exponential backoff and
  jitter, a bounded number of times; then :class:`OpenMetadataUnavailable`.
* 4xx: :class:`OpenMetadataError` naming the request, the entity and the field the server
  complained about.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from mesh_assets import settings
from mesh_assets.openmetadata.api import VERSION_PATH
from mesh_assets.settings import secret

log = logging.getLogger("mesh_assets.openmetadata")

HOST_ENV = "OPENMETADATA_HOST"
TOKEN_ENV = "OPENMETADATA_JWT_TOKEN"
MASK = "***"


class OpenMetadataError(RuntimeError):
    """OpenMetadata refused a request (4xx). ``entity`` and ``field`` say what to fix."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        entity: str | None = None,
        field: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ):
        super().__init__(message)
        self.status, self.entity, self.field = status, entity, field
        self.method, self.path = method, path


class OpenMetadataUnavailable(OpenMetadataError):
    """OpenMetadata did not answer (5xx, timeouts, connection errors) after every retry."""


def token_from_env() -> str | None:

    return secret(TOKEN_ENV)


def api_base(host: str) -> str:
    """``http://om:8585``, ``http://om:8585/`` or ``http://om:8585/api`` -> ``.../api``."""
    host = host.strip().rstrip("/")
    if not host.startswith(("http://", "https://")):
        raise ValueError(f"OpenMetadata host {host!r} must be an http(s) URL, e.g. http://localhost:8585")
    return host if host.endswith("/api") else host + "/api"


_FIELD_PATTERNS = (
    re.compile(r'Unrecognized field "([^"]+)"'),
    re.compile(r"(?:query param|param) ([\w.\[\]]+)"),
    re.compile(r"^\[?([A-Za-z_][\w.\[\]]*) (?:must|size|is|should|does)\b"),
    re.compile(r'field[s]? ["\'`]?([A-Za-z_][\w.\[\]]*)'),
    re.compile(r'(?:for|of) ([A-Za-z_]\w*) ["\']'),
)


def field_of(message: str) -> str | None:
    """The payload field an OpenMetadata error message is about, when it names one."""
    for pattern in _FIELD_PATTERNS:
        m = pattern.search(message)
        if m:
            return m.group(1)
    return None


class OpenMetadataClient:
    """JSON over HTTP to ``<host>/api/v1/...`` with bounded retries."""

    def __init__(
        self,
        host: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base = api_base(host)
        self.__token = token  # name-mangled: never part of repr/vars dumps by accident
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff, self.max_backoff = backoff, max_backoff
        self._sleep = sleep

    @classmethod
    def from_env(cls, host: str | None = None, **kwargs) -> OpenMetadataClient:
        host = host or settings.openmetadata_host()
        if not host:
            raise ValueError(f"no OpenMetadata host: pass --host or set {HOST_ENV}")
        return cls(host, token_from_env(), **kwargs)

    def __repr__(self) -> str:
        return f"OpenMetadataClient({self.base!r}, token={'set' if self.__token else 'unset'})"

    def _mask(self, text: str) -> str:
        token = self.__token
        return text.replace(token, MASK) if token and token in text else text

    # --- requests ------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, *, entity: str = "", allow_404: bool = False
    ) -> tuple[int, Any]:
        """``(status, parsed JSON or None)``. ``path`` starts with ``/v1/``."""
        url = self.base + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.__token:
            headers["Authorization"] = f"Bearer {self.__token}"
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as response:
                    status, raw = response.status, response.read()
                log.debug("openmetadata %s %s -> %s", method, path, status)
                return status, (json.loads(raw) if raw.strip() else None)
            except urllib.error.HTTPError as exc:
                raw = exc.read() if exc.fp is not None else b""
                status = exc.code
                if status == 404 and allow_404:
                    return status, None
                if status < 500 and status != 429:
                    raise self._client_error(method, path, status, raw, entity) from None
                last = f"HTTP {status}: {self._server_message(raw)}"
            except TimeoutError as exc:
                last = f"timed out after {self.timeout:g} s ({type(exc).__name__})"
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    last = f"timed out after {self.timeout:g} s"
                else:
                    last = f"{type(exc).__name__}: {reason}"
            last = self._mask(last)
            if attempt < self.max_attempts:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)
                log.warning(
                    "openmetadata %s %s (%s): %s; retry %d/%d in %.1f s",
                    method,
                    path,
                    entity or "-",
                    last,
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                self._sleep(delay)
        raise OpenMetadataUnavailable(
            f"OpenMetadata at {self.base} did not accept {method} {path}"
            f"{f' ({entity})' if entity else ''} after {self.max_attempts} attempts: {last}",
            method=method,
            path=path,
            entity=entity or None,
        )

    def _server_message(self, raw: bytes) -> str:
        text = raw.decode(errors="replace")
        try:
            parsed = json.loads(text)
            if isinstance(parsed, dict):
                text = str(parsed.get("message") or parsed.get("error") or parsed)
        except ValueError:
            pass
        return self._mask(text.strip()[:1000]) or "(empty body)"

    def _client_error(
        self, method: str, path: str, status: int, raw: bytes, entity: str
    ) -> OpenMetadataError:
        message = self._server_message(raw)
        what = entity or path
        if status in (401, 403):
            hint = (
                f"set {TOKEN_ENV} (or {TOKEN_ENV}_FILE) to the JWT of an OpenMetadata bot "
                "allowed to create and edit entities"
            )
            return OpenMetadataError(
                f"OpenMetadata refused {method} {path} for {what} with HTTP {status} ({message}): {hint}",
                status=status,
                entity=entity or None,
                method=method,
                path=path,
            )
        field = field_of(message)
        if "Unrecognized field" in message:
            message += (
                " (this server's API has no such field: choose its version with --api or "
                "OPENMETADATA_API_VERSION, or leave it to auto)"
            )
        return OpenMetadataError(
            f"OpenMetadata rejected {method} {path} for {what} with HTTP {status}: field {field!r}: {message}"
            if field
            else f"OpenMetadata rejected {method} {path} for {what} with HTTP {status}: "
            f"{message} (the server named no field)",
            status=status,
            entity=entity or None,
            field=field,
            method=method,
            path=path,
        )

    # --- helpers -------------------------------------------------------------------------------

    def put(self, path: str, body: Any, *, entity: str = "") -> tuple[int, Any]:
        return self.request("PUT", path, body, entity=entity)

    def server_version(self) -> str:
        """The server's version (``GET /v1/system/version``), e.g. ``2.0.7``."""
        _, body = self.request("GET", VERSION_PATH, entity="the server's version")
        version = body.get("version") if isinstance(body, dict) else None
        if not version:
            raise OpenMetadataError(
                f"OpenMetadata at {self.base} answered GET {VERSION_PATH} without a version: "
                "check that the host is OpenMetadata's URL, or choose the API with --api 1 or --api 2",
                method="GET",
                path=VERSION_PATH,
            )
        return str(version)

    def get_by_name(self, collection: str, fqn: str, *, entity: str = "") -> dict | None:
        """``GET /v1/<collection>/name/<fqn>``; None when it does not exist."""
        status, body = self.request(
            "GET", f"/v1/{collection}/name/{quote(fqn)}", entity=entity or fqn, allow_404=True
        )
        return body if status != 404 else None


def quote(fqn: str) -> str:
    """A fully qualified name as one URL path segment."""
    return urllib.parse.quote(fqn, safe="")
