"""Fixtures of the image tests (``make image-test``): the platform image, built from the
repository's Containerfile with podman on the Debian base (``mesh image build``; ``make
image`` builds it first, so here it is only checked to exist)."""

from __future__ import annotations

import pytest

from mesh_assets import image


@pytest.fixture(scope="session")
def platform_image() -> str:
    reference = image.platform_reference()
    if not image.image_exists(reference):
        image.build()
    return reference
