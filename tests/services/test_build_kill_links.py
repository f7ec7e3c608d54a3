"""A cascade build killed after publishing its link betas leaves no orphan link-beta version
current: the link betas become current only with the cascade version that names them (§4)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services.cascade import LINK_MODEL, MODEL, build_cascade
from riskstrata.services.demo import load_synthetic_into_store

SRC = Path(__file__).resolve().parents[2] / "src"
KILLED_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    from riskstrata.data.store import Store
    from riskstrata.services.cascade import build_cascade

    # Dies (kill -9) at its first block: after the link betas are published, before the cascade is.
    build_cascade(Store(sys.argv[1]), window=63, progress=lambda done, total: os.kill(os.getpid(), signal.SIGKILL))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_a_killed_cascade_build_leaves_the_link_betas_of_the_current_cascade_current(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    load_synthetic_into_store(store, synthetic_market(n_stocks=30, n_days=200, seed=3))
    build_cascade(store, window=63)
    good = store.model_meta(MODEL)
    assert store.current_version(LINK_MODEL) == good["link_version"]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(store.root)], env=env, timeout=300)
    assert proc.returncode == -9
    assert len(store.versions(LINK_MODEL)) == 2  # the killed build did publish its link betas …
    assert store.current_version(MODEL) == good["version"]
    assert store.current_version(LINK_MODEL) == good["link_version"]  # … but they are not current

    again = build_cascade(store, window=63)
    assert store.current_version(LINK_MODEL) == store.model_meta(MODEL, again.version)["link_version"]
