"""The landing zone: where raw files arrive, a local folder or an S3 prefix, and when a file
there is complete enough to be read.

``MESH_LANDING`` is a folder (default ``$MESH_HOME/landing``) or ``s3://bucket/prefix`` (in
production, on the same S3-compatible store as the warehouse: ``MESH_S3_ENDPOINT`` and the
``AWS_*`` credentials). The raw file of product ``domain.product`` is
``<landing>/<domain>/<source.file>``; the contract parser keeps ``source.file`` relative and
inside that folder, and this module refuses a symbolic link, a directory or anything else that
is not a regular file there, or a path that resolves outside the landing zone, before reading a
byte of it.

**Complete files only.** A landing file is read when it is complete:

* at once when ``<file>.done`` exists and is at least as new as the file (the producer wrote
  the file, then the marker; ``mesh land`` does this), or
* once nothing has changed it for the contract's ``source.settleSeconds`` (default 5): its
  modification time *and* its inode change time (which no writer can set back) are at least
  that old. ``mesh materialize`` waits for the rest of the window once, then refuses a file
  that changed meanwhile; the landing sensor simply looks again at its next tick.

Write-then-rename (write ``x.csv.part``, rename it to ``x.csv``) works without a marker: the
platform never sees the partial file (``.part``, ``.tmp`` and dot files are never landing
files). A producer that pauses longer than the window in the middle of a write is not
protected by the window alone: use the marker or the rename.

**Exactly the bytes read.** :func:`pin` reads a complete file once to compute its SHA-256 and
records its identity (inode, size, modification and change times); every later read of it
(:meth:`Landed.stream`) opens the same inode and checks at the end that nothing changed, so the
checksum recorded with a snapshot is the checksum of exactly the bytes that were ingested. A
file changed during a run is refused with the instruction to wait for the writer.

Ingestion reads a local file: a file in an S3 landing zone is first streamed to
``$MESH_HOME/landing-cache/`` (bounded memory, skipped when the cached copy has the object's
size and modification time), so checksums, error messages with line numbers and quarantine
work the same in both modes. S3 objects appear whole (a PUT is atomic); the window then counts
from the object's modification time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from pyarrow import fs as pafs

from mesh_assets.settings import MeshSettings, aws_region, load_settings, secret

if TYPE_CHECKING:
    from mesh_assets.contract.model import DataProduct

DONE_SUFFIX = ".done"  # <file>.done: the producer's word that <file> is complete
CHANGED = (
    "file changed while it was being read; wait until the writer finishes "
    "(use <file>.done or write-then-rename)"
)
# leading bytes of compressed files: the codecs pyarrow reads, and those it cannot
_CODECS = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\x28\xb5\x2f\xfd": "zstd"}
_ARCHIVES = {b"PK\x03\x04": "a zip archive", b"\xfd7zXZ\x00": "xz-compressed"}


class IngestionError(ValueError):
    """A raw file cannot be ingested. Names the file, product (column and line where there is
    one) and what to do; never a value of a classified column."""


def fail(where: Path | str, product: DataProduct, problem: str, column: str | None = None) -> IngestionError:
    col = f", column {column}" if column else ""
    return IngestionError(f"raw file {where}, product {product.identifier}{col}: {problem}")


@dataclass(frozen=True)
class LandingFile:
    """A product's raw file in the landing zone, as a stat sees it (nothing read)."""

    uri: str  # what a person sees: a path or s3://bucket/key
    signature: str  # changes whenever the file may have (inode, size, modification/change times)
    settle_left: float  # seconds until the file counts as complete (0: complete)


@dataclass(frozen=True)
class Landed:
    """A complete landing file pinned for reading: its bytes, their checksum, its identity."""

    path: Path  # the local file (an S3 object's cached copy)
    uri: str
    product: DataProduct
    sha256: str  # of exactly the bytes every stream yields (before decompression)
    signature: str
    compression: str | None  # gzip, bz2, zstd or None
    identity: tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns
    last_byte: bytes  # of the stored bytes: a text file cut short has no final line break

    @contextlib.contextmanager
    def stream(self) -> Iterator[pa.NativeFile]:
        """A stream of the pinned bytes (decompressed). At its normal end it checks that the
        file did not change while it was read."""
        with _open_regular(self.path, self.product) as f:
            if _identity(os.fstat(f.fileno())) != self.identity:
                raise fail(self.uri, self.product, CHANGED)
            raw = _native(f)
            try:
                yield pa.CompressedInputStream(raw, self.compression) if self.compression else raw
            finally:
                raw.close()
            if _identity(os.fstat(f.fileno())) != self.identity:
                raise fail(self.uri, self.product, CHANGED)

    def head(self, size: int = 1 << 16) -> bytes:
        """The first ``size`` bytes (decompressed)."""
        with self.stream() as s:
            return s.read(size)


def _native(f) -> pa.NativeFile:
    """An Arrow file reading the inode ``f`` has open. Arrow reads it natively through
    ``/proc/self/fd`` where there is one (Linux): Python-file reads would copy every block
    through Python bytes and leave the process hundreds of MB larger."""
    proc = Path(f"/proc/self/fd/{f.fileno()}")
    return pa.OSFile(str(proc)) if proc.exists() else pa.PythonFile(f, mode="r")


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


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _settle_left(last_change_ns: int, marker_ns: int | None, settle: float, now: float) -> float:
    """Seconds until a file last changed at ``last_change_ns`` is complete; 0 when a marker at
    least as new as the change says it is."""
    if marker_ns is not None and marker_ns >= last_change_ns:
        return 0.0
    return min(settle, max(0.0, settle - (now - last_change_ns / 1e9)))


def _local_path(product: DataProduct, root: str) -> Path:
    """The product's landing file, after refusing a path that leaves the landing zone or goes
    through a symbolic link (nothing is opened or read)."""
    base = Path(root)
    path = base / product.domain / product.source["file"]
    current = base
    for part in path.relative_to(base).parts:
        current = current / part
        if current.is_symlink():
            raise fail(
                path,
                product,
                f"{current} is a symbolic link; the landing zone takes regular files only "
                "(copy the file into it, do not link it)",
            )
    real_root = os.path.realpath(base)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise fail(
            path,
            product,
            f"the path resolves outside the landing zone {base}; land the file inside it",
        )
    return path


def _not_a_file(path: Path, product: DataProduct, mode: int) -> IngestionError:
    if stat.S_ISDIR(mode):
        return fail(path, product, "is a directory, not a file; land the file itself under this name")
    return fail(path, product, "is not a regular file (a pipe, socket or device); land a plain file")


@contextlib.contextmanager
def _open_regular(path: Path, product: DataProduct):
    """``path`` opened for reading, without following a symbolic link or blocking on a pipe;
    anything but a regular file is refused before a byte is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise fail(
            path,
            product,
            "the raw file is missing from the landing folder; copy it there (for the demo data: `mesh land`)",
        ) from None
    except OSError as exc:  # ELOOP: the last component is a symbolic link
        if path.is_symlink():
            raise fail(
                path,
                product,
                "is a symbolic link; the landing zone takes regular files only "
                "(copy the file into it, do not link it)",
            ) from None
        raise fail(path, product, f"cannot be opened ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_a_file(path, product, mode)
    with os.fdopen(fd, "rb") as f:
        yield f


def landing_file(product: DataProduct, settings: MeshSettings | None = None) -> LandingFile | None:
    """The product's raw file as a stat sees it, or None when nothing has landed yet. Refuses
    (:class:`IngestionError`) a path through a symbolic link or out of the landing zone."""

    settings = settings or load_settings()
    root = landing_root(settings)
    now = time.time()
    if not is_remote(root):
        path = _local_path(product, root)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise _not_a_file(path, product, st.st_mode)
        try:
            marker = os.lstat(path.with_name(path.name + DONE_SUFFIX))
            marker_ns = marker.st_mtime_ns if stat.S_ISREG(marker.st_mode) else None
        except FileNotFoundError:
            marker_ns = None
        last_change = max(st.st_mtime_ns, st.st_ctime_ns)
        return LandingFile(
            str(path),
            f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}",
            _settle_left(last_change, marker_ns, product.settle_seconds, now),
        )
    s3 = _s3(settings)
    info, marker = s3.get_file_info([_key(product, root), _key(product, root) + DONE_SUFFIX])
    if info.type != pafs.FileType.File:
        return None
    marker_ns = marker.mtime_ns if marker.type == pafs.FileType.File else None
    return LandingFile(
        f"s3://{_key(product, root)}",
        f"{info.mtime_ns}:{info.size}",
        _settle_left(info.mtime_ns, marker_ns, product.settle_seconds, now),
    )


def local_path(product: DataProduct, settings: MeshSettings | None = None) -> Path:
    """A local path of the product's raw file: the file itself, or its cached copy when the
    landing zone is S3 (downloaded only when the object changed). A file that has not landed
    yields its would-be path, so the caller's error names where it is expected."""
    settings = settings or load_settings()
    root = landing_root(settings)
    if not is_remote(root):
        return _local_path(product, root)
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
    again = landing_file(product, settings)
    if again is None or again.signature != found.signature:
        tmp.unlink(missing_ok=True)
        raise fail(found.uri, product, CHANGED)
    tmp.replace(cached)
    marker.write_text(found.signature)
    return cached


def pin(product: DataProduct, settings: MeshSettings | None = None, *, wait: bool = True) -> Landed:
    """The product's landing file, complete and pinned: read once for its checksum.

    A file that is not complete yet (see the module docstring) is waited for until its window
    ends (``wait``), then refused if it changed meanwhile; without ``wait`` it is refused at
    once. Every refusal is an :class:`IngestionError` naming the file and what to do."""
    settings = settings or load_settings()
    found = landing_file(product, settings)
    if found is None:
        raise fail(
            local_path(product, settings),
            product,
            "the raw file is missing from the landing folder; copy it there (for the demo data: `mesh land`)",
        )
    if found.settle_left > 0:
        if not wait:
            raise fail(found.uri, product, _still_written(product))
        time.sleep(found.settle_left)
        again = landing_file(product, settings)
        if again is None or again.signature != found.signature:
            raise fail(found.uri, product, _still_written(product))
    path = local_path(product, settings)
    with _open_regular(path, product) as f:
        before = _identity(os.fstat(f.fileno()))
        digest = hashlib.file_digest(f, "sha256")
        after = _identity(os.fstat(f.fileno()))
        size = f.tell()
        f.seek(0)
        magic = f.read(8)
        f.seek(max(size - 1, 0))
        last_byte = f.read(1)
    if before != after or size != before[2]:
        raise fail(found.uri, product, CHANGED)
    if not is_remote(landing_root(settings)):
        now = landing_file(product, settings)
        if now is None or now.signature != found.signature:  # replaced since it was looked at
            raise fail(found.uri, product, CHANGED)
    compression = next((codec for head, codec in _CODECS.items() if magic.startswith(head)), None)
    archive = next((kind for head, kind in _ARCHIVES.items() if magic.startswith(head)), None)
    if archive:
        raise fail(
            found.uri,
            product,
            f"the file is {archive}, which ingestion does not unpack; land the CSV itself "
            "(gzip, bzip2 or zstd compression is read as is)",
        )
    return Landed(
        path, found.uri, product, digest.hexdigest(), found.signature, compression, before, last_byte
    )


def _still_written(product: DataProduct) -> str:
    return (
        f"the file is still being written (changed less than settleSeconds = "
        f"{product.settle_seconds:g} s ago); wait until the writer finishes "
        "(use <file>.done or write-then-rename)"
    )


def put(product: DataProduct, source: Path, settings: MeshSettings | None = None) -> str:
    """Place ``source`` as the product's raw file in the landing zone, then its ``.done``
    marker; returns where."""

    settings = settings or load_settings()
    root = landing_root(settings)
    if not is_remote(root):
        target = _local_path(product, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        shutil.copyfile(source, part)
        part.replace(target)
        mark_complete(product, settings)
        return str(target)
    key = _key(product, root)
    pafs.copy_files(
        str(source), key, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=_s3(settings)
    )
    mark_complete(product, settings)
    return f"s3://{key}"


def mark_complete(product: DataProduct, settings: MeshSettings | None = None) -> None:
    """Write the product's ``<file>.done`` marker: the file as it is now is complete."""
    settings = settings or load_settings()
    root = landing_root(settings)
    if not is_remote(root):
        marker = _local_path(product, root)
        marker = marker.with_name(marker.name + DONE_SUFFIX)
        marker.touch()
        return
    with _s3(settings).open_output_stream(_key(product, root) + DONE_SUFFIX) as out:
        out.write(b"")
