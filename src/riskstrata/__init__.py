"""riskstrata: open, self-hosted equity risk models.

Entry points:
- :func:`riskstrata.fit_cascade` fits Model A (the hierarchical ETF cascade) on in-memory pandas data.
- :class:`riskstrata.Store` is the on-disk store (Parquet + DuckDB) that the CLI and services use.
- :func:`riskstrata.synthetic_market` generates a seeded market with known ground truth.
"""

from __future__ import annotations

__version__ = "0.1.0"
