"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskstrata.data.store import Store

# The real reference data lives beside the repository: <repo>/../shared/data.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real reference data; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """An empty store in the test's temporary directory."""
    return Store(tmp_path / "store")
