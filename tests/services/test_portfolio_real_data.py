"""Real 13F and ETF holdings through the CLI (skipped where ../shared/data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.services.test_cli import run

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.realdata
if not (SHARED / "sec" / "13F-HR.infotable.xml").exists():
    pytest.skip(f"real SEC samples not present at {SHARED}", allow_module_level=True)


def test_the_real_13f_imports_255_lines_with_every_cusip_mapped(tmp_path):
    out = tmp_path / "fund.csv"
    proc = run("portfolio", "import-13f", str(SHARED / "sec" / "13F-HR.infotable.xml"), "--cusip-map",
               str(SHARED / "sec" / "cusip_ticker.parquet"), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["lines"] == 255 and data["mapped"] == 255
    assert out.exists()
