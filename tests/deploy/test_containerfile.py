"""The Containerfile and its build context, checked as source (in seconds, with every test
run): no credential in the file, none of its ARG/ENV names a credential, nothing copied
wholesale, local state kept out by .dockerignore. The image itself is built and run by
tests/image (`make image-test`): user, permissions, paths, contents.
"""

from __future__ import annotations

import re

from mesh_assets.governance import SECRET_PATTERNS
from mesh_assets.settings import PROJECT_DIR

CONTAINERFILE = PROJECT_DIR / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_no_credentials_in_the_image():
    text = CONTAINERFILE.read_text()
    for number, line in enumerate(text.splitlines(), 1):
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(line), f"Containerfile:{number}: {line}"
    for word, rest in instructions():
        if word in ("ENV", "ARG"):
            for name in re.findall(r"(\w+)=", rest):
                assert not re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", name), f"{word} {name}"
    # nothing copied wholesale; local state and build outputs stay out of the context
    copies = [r for w, r in instructions() if w in ("COPY", "ADD")]
    assert not any(re.fullmatch(r"(--\S+ )*\. \S+", r) for r in copies), "COPY . copies everything"
    ignore = (PROJECT_DIR / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".mesh", "dbt_project/target", ".env*"):
        assert entry in ignore, entry


def test_the_image_builds_with_the_uv_of_the_makefile():
    """uv.lock is written by the Makefile's uv; the image's environment is synced by the same."""
    makefile = re.search(r"^UV_VERSION := (\S+)$", (PROJECT_DIR / "Makefile").read_text(), re.M)
    containerfile = re.search(r"^ARG UV_VERSION=(\S+)$", CONTAINERFILE.read_text(), re.M)
    assert makefile and containerfile and makefile.group(1) == containerfile.group(1)
