"""riskstrata: open, self-hosted equity risk models.

Entry points:
- :func:`riskstrata.fit_cascade` fits Model A (the hierarchical ETF cascade) on in-memory pandas data.
- :class:`riskstrata.Store` is the on-disk store (Parquet + DuckDB) that the CLI and services use.
- :func:`riskstrata.synthetic_market` generates a seeded market with known ground truth.
"""

from __future__ import annotations

from riskstrata.cascade import CascadeResult, fit_cascade
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market

__version__ = "0.1.0"
__all__ = ["CascadeResult", "Store", "fit_cascade", "synthetic_market", "__version__"]
