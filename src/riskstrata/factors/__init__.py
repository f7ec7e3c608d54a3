"""Model B: the fundamental cross-sectional factor model (SPEC §3, docs/model_b.md).

Descriptors → exposures (winsorised, standardised, imputed) → daily constrained WLS
(factor and specific returns) → factor covariance and specific risk → validation and summary.
"""
