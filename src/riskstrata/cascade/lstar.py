"""L* (the statistical hedge depth) and the economic recommended hedge level.

Rules from SPEC §2 and api-contract §7: L* is the simplest level whose marginal explained risk
clears θ, testing L3 first; the recommended level starts at L* and steps down while the level's
gross hedge Σ|HR| exceeds the user segment's leverage cap or its haircut marginal ER is too small.
"""

from __future__ import annotations

import numpy as np

LSTAR_THRESHOLD = 0.01
LEVERAGE_CAPS = {"retail": 1.5, "family_office": 2.0, "ls_equity": 3.0, "stat_arb": 5.0}
DEFAULT_SEGMENT = "family_office"
ER_HAIRCUT = 0.7
MIN_HAIRCUT_ER = 0.01

_LEVEL_HRS = {
    1: ("l1_mkt_hr",),
    2: ("l2_mkt_hr", "l2_sec_hr"),
    3: ("l3_mkt_hr", "l3_sec_hr", "l3_sub_hr"),
}
_MARGINAL_ER = {2: "l2_sec_er", 3: "l3_sub_er"}


def lstar_level(l2_sec_er: np.ndarray, l3_sub_er: np.ndarray, threshold: float = LSTAR_THRESHOLD) -> np.ndarray:
    """L* per element: 3 if l3_sub_er ≥ θ, else 2 if l2_sec_er ≥ θ, else 1; 0 (null) if both are NaN.

    A negative or NaN marginal ER fails the bar. Shapes broadcast; returns int8.
    """
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    sub, sec = np.asarray(l3_sub_er, dtype=np.float64), np.asarray(l2_sec_er, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        level = np.where(sub >= threshold, 3, np.where(sec >= threshold, 2, 1)).astype(np.int8)
    level[np.isnan(sub) & np.isnan(sec)] = 0
    return level


def lstar(values: dict[str, np.ndarray], threshold: float = LSTAR_THRESHOLD) -> dict[str, np.ndarray]:
    """``lstar_level`` (T, n) and its time-safe residual return ``lstar_rr``.

    lstar_rr on day t is the residual return of the level chosen at t−1: the hedge that was on
    during day t (choosing with day t's own window would peek at day t's return).
    """
    level = lstar_level(values["l2_sec_er"], values["l3_sub_er"], threshold)
    lag = np.zeros_like(level)
    lag[1:] = level[:-1]
    rr = np.full(level.shape, np.nan)
    for k in (1, 2, 3):
        rr = np.where(lag == k, values[f"l{k}_rr"], rr)
    return {"lstar_level": level, "lstar_rr": rr}


def hedge_gross(values: dict[str, np.ndarray], level: int) -> np.ndarray:
    """Σ|HR| of a level's legs, missing legs counted as 0."""
    return sum(np.abs(np.nan_to_num(np.asarray(values[k], dtype=np.float64))) for k in _LEVEL_HRS[level])


def recommended_hedge_level(values: dict[str, np.ndarray], segment: str = DEFAULT_SEGMENT,
                            threshold: float = LSTAR_THRESHOLD) -> np.ndarray:
    """Economic hedge level (1/2/3) per element, given the user segment's leverage cap.

    Start from L* (null → L1); step down while Σ|HR| of the level exceeds the cap or while
    0.7 × its marginal ER < 0.01; never below L1. ``values`` maps field names to arrays.
    """
    if segment not in LEVERAGE_CAPS:
        raise ValueError(f"unknown segment {segment!r}; choose one of {sorted(LEVERAGE_CAPS)}")
    cap = LEVERAGE_CAPS[segment]
    level = lstar_level(values["l2_sec_er"], values["l3_sub_er"], threshold).astype(np.int8)
    level[level == 0] = 1
    for k in (3, 2):
        at_k = level == k
        marginal = np.nan_to_num(np.asarray(values[_MARGINAL_ER[k]], dtype=np.float64))
        step_down = at_k & ((hedge_gross(values, k) > cap) | (ER_HAIRCUT * marginal < MIN_HAIRCUT_ER))
        level[step_down] = k - 1
    return level
