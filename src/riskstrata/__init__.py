"""riskstrata: open, self-hosted equity risk models.

Entry points:
- :func:`riskstrata.fit_cascade` fits Model A (the hierarchical ETF cascade) on in-memory pandas data.
- :class:`riskstrata.Store` is the on-disk store (Parquet + DuckDB) that the CLI and services use.
- :func:`riskstrata.synthetic_market` generates a seeded market with known ground truth.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from riskstrata.cascade import CascadeResult, fit_cascade
    from riskstrata.data.store import Store
    from riskstrata.data.synthetic import synthetic_market

__version__ = "0.1.0"
__all__ = ["CascadeResult", "Store", "fit_cascade", "synthetic_market", "__version__"]

# The entry points are imported on first use (PEP 562), so `import riskstrata` — and with it
# `riskstrata --help` — does not pay for numpy, pandas, scipy and DuckDB.
_LAZY = {"CascadeResult": "riskstrata.cascade", "fit_cascade": "riskstrata.cascade",
         "Store": "riskstrata.data.store", "synthetic_market": "riskstrata.data.synthetic"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'riskstrata' has no attribute {name!r}")
