"""Small file-writing helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write ``text`` (stripped, newline-terminated) to ``tmp_path / name`` and return the path."""
    path = tmp_path / name
    path.write_text(text.strip() + "\n")
    return path
