"""`riskstrata --help` starts fast because the command tree imports no heavy library.

No wall time is asserted here (see benchmarks/bench_cli_startup.py for the timing): the
property tested is the cause of a slow start, which does not depend on how busy the machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("scipy", "pandas", "numpy", "duckdb", "pyarrow", "fastapi", "statsmodels", "uvicorn")


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_building_the_command_tree_imports_no_heavy_library() -> None:
    loaded = _modules_after("import riskstrata.cli\nfrom typer.main import get_command\n"
                            "get_command(riskstrata.cli.app)")
    assert not loaded & set(HEAVY), f"`riskstrata --help` imports {sorted(loaded & set(HEAVY))}"


def test_package_entry_points_still_import_on_first_use() -> None:
    loaded = _modules_after("import riskstrata\nassert 'scipy' not in __import__('sys').modules\n"
                            "riskstrata.Store, riskstrata.fit_cascade, riskstrata.synthetic_market")
    assert "duckdb" in loaded and "pandas" in loaded


def test_help_runs_and_lists_the_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "riskstrata.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("ingest", "build", "portfolio", "factors", "serve"):
        assert command in out.stdout
