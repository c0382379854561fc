"""The S3-compatible object store: Versity S3 Gateway (versitygw, Apache-2.0), posix backend.

Built once with ``go install`` into the tools cache. It serves what both sides of the stack use:
Trino's native S3 file system and pyiceberg's pyarrow S3 file system (multipart upload,
ListObjectsV2, HEAD, ranged GET, DeleteObjects). Objects are plain files under
``stack/s3/data/<bucket>/...``; object metadata (ETags, content types, bucket ownership) goes to
a sidecar folder rather than extended attributes, so any local file system works. MinIO is
not used: it is AGPL-licensed.
"""

from __future__ import annotations

from pathlib import Path

from pyarrow import fs

from mesh_assets import settings, tools
from mesh_assets.stack.layout import BUCKET, HOST, S3_REGION, StackLayout
from mesh_assets.stack.processes import ServiceProcess, port_accepts

NAME = "s3"
VERSITYGW = tools.GoTool("versitygw", "github.com/versity/versitygw/cmd/versitygw", "v1.8.0")


def binary() -> Path:
    return tools.go_tool(VERSITYGW.name, VERSITYGW)


class ObjectStore:
    def __init__(self, layout: StackLayout):
        self.layout = layout
        self.process = ServiceProcess(NAME, layout, marker="versitygw")
        self.data = layout.root / "s3" / "data"
        self.meta = layout.root / "s3" / "meta"

    @property
    def port(self) -> int:
        return self.layout.ports[NAME]

    def start(self, gateway: Path) -> int:
        for path in (self.data, self.meta):
            path.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": settings.inherited_path(),
            # the root credentials reach the gateway through its environment, not argv
            "ROOT_ACCESS_KEY_ID": self.layout.secret("s3-access-key"),
            "ROOT_SECRET_ACCESS_KEY": self.layout.secret("s3-secret-key"),
            "VGW_REGION": S3_REGION,
        }
        argv = [
            str(gateway),
            "--port",
            f"{HOST}:{self.port}",
            "--quiet",
            "posix",
            "--sidecar",
            str(self.meta),
            str(self.data),
        ]
        return self.process.start(argv, env=env, cwd=self.layout.root)

    def filesystem(self, *, timeout_s: float = 5.0):
        """A pyarrow S3 file system on the store with the root credentials."""

        return fs.S3FileSystem(
            access_key=self.layout.secret("s3-access-key"),
            secret_key=self.layout.secret("s3-secret-key"),
            endpoint_override=f"{HOST}:{self.port}",
            scheme="http",
            region=S3_REGION,
            connect_timeout=timeout_s,
            request_timeout=timeout_s,
            allow_bucket_creation=True,
            retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=2),
        )

    def ensure_bucket(self) -> bool:
        """Create the warehouse bucket unless it exists (also the readiness probe at start)."""

        if not port_accepts(self.port):
            return False
        s3 = self.filesystem()
        if s3.get_file_info(BUCKET).type == fs.FileType.NotFound:
            s3.create_dir(BUCKET)
        return True

    def health(self) -> str:
        """'...' or raises: the bucket can be listed with the stack's credentials."""

        if not port_accepts(self.port):
            raise ConnectionError(f"nothing accepts connections on {HOST}:{self.port}")
        s3 = self.filesystem()
        s3.get_file_info(fs.FileSelector(BUCKET, allow_not_found=False, recursive=False))
        return f"versitygw {VERSITYGW.version}, bucket {BUCKET} listed"

    def stop(self) -> bool:
        return self.process.stop()
