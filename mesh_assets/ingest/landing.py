"""The landing zone: where raw files arrive, a local folder or an S3 prefix.

``MESH_LANDING`` is a folder (default ``$MESH_HOME/landing``) or ``s3://bucket/prefix`` (in
production, on the same S3-compatible store as the warehouse: ``MESH_S3_ENDPOINT`` and the
``AWS_*`` credentials). The raw file of product ``domain.product`` is
``<landing>/<domain>/<source.file>``.

Ingestion reads a local file: a file in an S3 landing zone is first streamed to
``$MESH_HOME/landing-cache/`` (bounded memory, skipped when the cached copy has the object's
size and modification time), so checksums, error messages with line numbers and quarantine
work the same in both modes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pyarrow import fs as pafs

from mesh_assets.settings import MeshSettings, aws_region, load_settings, secret

if TYPE_CHECKING:
    from mesh_assets.contract.model import DataProduct


@dataclass(frozen=True)
class LandingFile:
    """A product's raw file in the landing zone."""

    uri: str  # what a person sees: a path or s3://bucket/key
    signature: str  # changes whenever the file does (modification time and size)


def landing_root(settings: MeshSettings | None = None) -> str:
    settings = settings or load_settings()
    return str(settings.landing_uri)


def is_remote(root: str) -> bool:
    return root.startswith("s3://")


def _s3(settings: MeshSettings):

    endpoint = settings.s3_endpoint
    kwargs = {}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs = {"endpoint_override": host or endpoint, "scheme": scheme if host else "https"}
    return pafs.S3FileSystem(
        access_key=secret("AWS_ACCESS_KEY_ID"),
        secret_key=secret("AWS_SECRET_ACCESS_KEY"),
        region=aws_region(),
        allow_bucket_creation=False,
        **kwargs,
    )


def _key(product: DataProduct, root: str) -> str:
    return f"{root.removeprefix('s3://').rstrip('/')}/{product.domain}/{product.source['file']}"


def landing_file(product: DataProduct, settings: MeshSettings | None = None) -> LandingFile | None:
    """The product's raw file, or None when nothing has landed yet."""

    settings = settings or load_settings()
    root = landing_root(settings)
    if not is_remote(root):
        path = Path(root) / product.domain / product.source["file"]
        if not path.exists():
            return None
        stat = path.stat()
        return LandingFile(str(path), f"{stat.st_mtime_ns}:{stat.st_size}")
    info = _s3(settings).get_file_info(_key(product, root))
    if info.type != pafs.FileType.File:
        return None
    return LandingFile(f"s3://{_key(product, root)}", f"{info.mtime_ns}:{info.size}")


def local_path(product: DataProduct, settings: MeshSettings | None = None) -> Path:
    """A local path of the product's raw file: the file itself, or its cached copy when the
    landing zone is S3 (downloaded only when the object changed). A file that has not landed
    yields its would-be path, so the caller's error names where it is expected."""
    settings = settings or load_settings()
    root = landing_root(settings)
    if not is_remote(root):
        return Path(root) / product.domain / product.source["file"]
    cached = settings.home / "landing-cache" / product.domain / product.source["file"]
    found = landing_file(product, settings)
    if found is None:
        return cached.with_name(cached.name + ".missing")
    marker = cached.with_name(cached.name + ".signature")
    if cached.exists() and marker.exists() and marker.read_text() == found.signature:
        return cached

    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + ".part")
    pafs.copy_files(
        _key(product, root),
        str(tmp),
        source_filesystem=_s3(settings),
        destination_filesystem=pafs.LocalFileSystem(),
    )
    tmp.replace(cached)
    marker.write_text(found.signature)
    return cached


def put(product: DataProduct, source: Path, settings: MeshSettings | None = None) -> str:
    """Place ``source`` as the product's raw file in the landing zone; returns where."""

    settings = settings or load_settings()
    root = landing_root(settings)
    if not is_remote(root):
        target = Path(root) / product.domain / product.source["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)
    key = _key(product, root)
    pafs.copy_files(
        str(source), key, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=_s3(settings)
    )
    return f"s3://{key}"
