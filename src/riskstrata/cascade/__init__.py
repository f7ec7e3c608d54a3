"""Model A: the hierarchical ETF cascade (market → sector → subsector), SPEC §2.

Entry point: :func:`fit_cascade` → :class:`CascadeResult`.
"""

from riskstrata.cascade.fit import CascadeParams, fit_cascade
from riskstrata.cascade.result import WIRE_FIELDS, CascadeResult

__all__ = ["CascadeParams", "CascadeResult", "WIRE_FIELDS", "fit_cascade"]
