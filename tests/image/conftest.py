"""Fixtures of the image tests (``make image-test``): the platform image, built from the
working tree's Containerfile with podman on the Debian base (``mesh image build``). It is
built at the start of the session, so the tests never run an image older than the code; with
podman's layer cache that takes seconds when nothing changed. The build's time, size and
layers go to test-artifacts/image/build.json."""

from __future__ import annotations

import json

import pytest

from mesh_assets import image
from mesh_assets.settings import PROJECT_DIR

ARTIFACTS = PROJECT_DIR / "test-artifacts" / "image"


@pytest.fixture(scope="session")
def platform_image() -> str:
    built = image.build()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "build.json").write_text(
        json.dumps(
            {
                "image": built.reference,
                "bytes": built.size,
                "layers": built.layers,
                "seconds": round(built.seconds),
            },
            indent=2,
        )
    )
    return built.reference
