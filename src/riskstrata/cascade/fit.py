"""Fit Model A on in-memory pandas data: the one entry point is :func:`fit_cascade`.

The work is split into blocks of stocks that share their ETFs (SPEC §6: the partitions Dask
would run). Inside a block every array is (T, n): moments come from
:mod:`riskstrata.cascade.moments`, the algebra from :mod:`riskstrata.cascade.kernel`.
Stocks with no missing day share their group's ETF moments; the others get their own,
masked to the days they traded, so every regression uses exactly the stock's valid rows.
"""

from __future__ import annotations

import mmap
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskstrata.cascade.assignments import AssignmentCodes, assignment_codes
from riskstrata.cascade.kernel import (HR_NAMES, NULLING_FLAGS, RES_ER_NAMES, Flag, WindowCovariances,
                                       check_normal_equations, hedge_ratio, residual_share, solve_cascade)
from riskstrata.cascade.lstar import LSTAR_THRESHOLD, lstar, lstar_level
from riskstrata.cascade.result import FieldMap
from riskstrata.cascade.moments import center, decay_for, window_sums
from riskstrata.errors import DataValidationError, InsufficientHistory

# Output fields, in wire names (api-contract §6.1). Float fields unless noted.
HR_FIELDS = ["l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr"]
ER_FIELDS = ["l1_mkt_er", "l1_res_er", "l2_mkt_er", "l2_sec_er", "l2_res_er",
             "l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er"]
BETA_FIELDS = ["l1_mkt_beta", "l2_sec_beta", "l3_sub_beta"]
LINK_FIELDS = ["lambda_sm", "lambda_um", "lambda_us"]
RETURN_FIELDS = ["l1_cfr", "l2_cfr", "l3_cfr", "l1_rr", "l2_rr", "l3_rr", "lstar_rr"]
LAGGED_FIELDS = frozenset(["l1_cfr", "l2_cfr", "l3_cfr", "l1_rr", "l2_rr", "l3_rr"])
VOL_FIELDS = ["stock_var", "vol_23d", "vol_252d_ann"]
FLOAT_FIELDS = HR_FIELDS + ER_FIELDS + BETA_FIELDS + LINK_FIELDS + RETURN_FIELDS + VOL_FIELDS + [
    "returns_gross", "n_obs"]
INT_FIELDS = ["lstar_level", "flags"]

VOL_SHORT_WINDOW = 23
VOL_LONG_WINDOW = 252
ANNUALISE = np.sqrt(252.0)


@dataclass(frozen=True)
class CascadeParams:
    """How the rolling regressions are run. window in trading days; halflife in days or None."""

    market_etf: str = "SPY"
    window: int = 252
    halflife: float | None = None
    min_obs: int | None = None
    lstar_threshold: float = LSTAR_THRESHOLD

    @property
    def min_obs_effective(self) -> int:
        # A quarter of the window (63 days for 252) and never fewer than 4 × the 4 parameters.
        return self.min_obs if self.min_obs is not None else max(16, self.window // 4)

    def validate(self) -> None:
        if not isinstance(self.window, (int, np.integer)) or self.window < 2:
            raise DataValidationError(f"window must be an integer ≥ 2 trading days, got {self.window!r}")
        decay_for(self.halflife)
        if self.min_obs_effective < 5:
            raise DataValidationError("min_obs must be at least 5 (four parameters plus one)")
        if self.min_obs_effective > self.window:
            raise DataValidationError(f"min_obs {self.min_obs_effective} exceeds the window {self.window}")


@dataclass
class CascadeBlock:
    """Outputs for a block of stocks: values[field] is (T, n) for ``tickers``."""

    tickers: list[str]
    values: dict[str, np.ndarray]
    codes: np.ndarray  # (T, n) int32 assignment code per date
    cols: np.ndarray | None = None  # (n,) positions of ``tickers`` in the prepared inputs


@dataclass
class PreparedInputs:
    """Validated, aligned arrays: returns (T, N), ETF returns (T, E), assignment codes."""

    dates: pd.DatetimeIndex
    tickers: pd.Index
    returns: np.ndarray
    etfs: pd.Index
    etf_returns: np.ndarray
    assignment: AssignmentCodes
    diagnostics: list[str] = field(default_factory=list)

    def etf_column(self, etf: str) -> int:
        return int(self.etfs.get_loc(etf))


def _finite_frame(frame: pd.DataFrame, what: str, diagnostics: list[str]) -> np.ndarray:
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    bad = np.isinf(values)
    if bad.any():
        diagnostics.append(f"{what}: {int(bad.sum())} infinite values treated as missing")
        values[bad] = np.nan
    return values


def prepare_inputs(returns: pd.DataFrame, etf_returns: pd.DataFrame, assignments: pd.DataFrame | None,
                   params: CascadeParams) -> PreparedInputs:
    """Check and align the pandas inputs once, at the boundary."""
    params.validate()
    for name, frame in (("returns", returns), ("etf_returns", etf_returns)):
        if not isinstance(frame, pd.DataFrame):
            raise DataValidationError(f"{name} must be a DataFrame (dates × tickers)")
        if not isinstance(frame.index, pd.DatetimeIndex):
            try:
                frame.index = pd.DatetimeIndex(frame.index)
            except (TypeError, ValueError) as exc:
                raise DataValidationError(f"{name} index must be dates: {exc}") from None
        if frame.index.has_duplicates:
            raise DataValidationError(f"{name} has duplicate dates")
        if frame.columns.has_duplicates:
            raise DataValidationError(f"{name} has duplicate columns: {list(frame.columns[frame.columns.duplicated()])[:5]}")
    if returns.shape[1] == 0 or returns.shape[0] == 0:
        raise DataValidationError("returns is empty")
    if params.market_etf not in etf_returns.columns:
        raise DataValidationError(f"etf_returns has no market ETF column {params.market_etf!r}")
    diagnostics: list[str] = []
    dates = returns.index.sort_values()
    returns = returns.reindex(dates)
    etf = etf_returns.reindex(dates)
    extra = etf_returns.index.difference(dates)
    if len(extra):
        diagnostics.append(f"etf_returns: {len(extra)} dates with no stock returns ignored")
    r = _finite_frame(returns, "returns", diagnostics)
    e = _finite_frame(etf, "etf_returns", diagnostics)
    codes = assignment_codes(assignments, returns.columns, dates)
    unknown = sorted({x for pair in codes.pairs for x in pair if x is not None} - set(etf.columns))
    if unknown:
        raise DataValidationError(f"assignments name ETFs with no returns in etf_returns: {unknown}")
    # An ETF's missing days inside its listed life (not before its first day) would knock out
    # every stock mapped to it; they are repaired to a zero return and reported.
    for j, name in enumerate(etf.columns):
        col = e[:, j]
        first = np.argmax(np.isfinite(col)) if np.isfinite(col).any() else len(col)
        holes = ~np.isfinite(col[first:])
        if name != params.market_etf and holes.any():
            diagnostics.append(f"{name}: {int(holes.sum())} missing days inside its history set to 0 return")
            col[first:][holes] = 0.0
    return PreparedInputs(dates, returns.columns, r, etf.columns, e, codes, diagnostics)


def _listed_full_window(col: np.ndarray, window: int) -> np.ndarray:
    """(T,) bool: the ETF has data on every row of the window ending at t (it is usable)."""
    listed = np.isfinite(col).astype(np.float64)
    return window_sums(listed, window) >= min(window, len(col)) - 0.5


@dataclass
class _GroupFactors:
    """Centred, zero-filled factor series of one (sector, subsector) pair; None = absent."""

    m: np.ndarray
    s: np.ndarray | None
    u: np.ndarray | None
    s_usable: np.ndarray  # (T,) bool
    u_usable: np.ndarray


class CascadeEngine:
    """Runs the cascade block by block over prepared inputs (no I/O)."""

    def __init__(self, inputs: PreparedInputs, params: CascadeParams) -> None:
        self.inputs = inputs
        self.params = params
        self.decay = decay_for(params.halflife)
        T = len(inputs.dates)
        m_raw = inputs.etf_returns[:, inputs.etf_column(params.market_etf)]
        self.market_ok = np.isfinite(m_raw)
        if self.market_ok.sum() < params.min_obs_effective:
            raise InsufficientHistory(
                f"market ETF {params.market_etf} has {int(self.market_ok.sum())} valid days; "
                f"at least {params.min_obs_effective} are needed")
        self._centred = center(inputs.etf_returns)
        self._raw = np.nan_to_num(inputs.etf_returns, nan=0.0)
        self._usable = {name: _listed_full_window(inputs.etf_returns[:, j], params.window)
                        for j, name in enumerate(inputs.etfs)}
        self._groups: dict[int, _GroupFactors] = {}
        self.T = T

    # ------------------------------------------------------------------ factors per pair
    def _series(self, etf: str | None) -> np.ndarray | None:
        if etf is None:
            return None
        return np.nan_to_num(self._centred[:, self.inputs.etf_column(etf)], nan=0.0)

    def group(self, code: int) -> _GroupFactors:
        if code not in self._groups:
            sec, sub = self.inputs.assignment.pairs[code]
            m = np.where(self.market_ok, self._series(self.params.market_etf), 0.0)
            none = np.zeros(self.T, dtype=bool)
            self._groups[code] = _GroupFactors(
                m=m, s=self._series(sec), u=self._series(sub),
                s_usable=self._usable[sec] if sec else none,
                u_usable=self._usable[sub] if sub else none)
        return self._groups[code]

    # ------------------------------------------------------------------ moments
    def _covariances(self, g: _GroupFactors, r: np.ndarray, valid: np.ndarray | None
                     ) -> tuple[WindowCovariances, np.ndarray, np.ndarray]:
        """Window covariances for stocks r (T, n); valid=None means every row is valid.

        Returns (covariances, weight sum n_w (T, 1|n), valid-day count (T, 1|n)).
        """
        W, d = self.params.window, self.decay
        zeros = np.zeros(self.T)
        s = g.s if g.s is not None else zeros
        u = g.u if g.u is not None else zeros
        if valid is None:
            mask = self.market_ok[:, None].astype(np.float64)
        else:
            mask = valid.astype(np.float64)

        def ws(x: np.ndarray) -> np.ndarray:
            return window_sums(x, W, d)

        col = (lambda x: x[:, None] * mask)  # a factor series restricted to the valid rows
        fm, fs, fu = col(g.m), col(s), col(u)
        n_w = ws(mask)
        count = n_w if d == 1.0 else window_sums(mask, W)
        S = {
            "m": ws(fm), "s": ws(fs), "u": ws(fu),
            "mm": ws(fm * g.m[:, None]), "ms": ws(fm * s[:, None]), "mu": ws(fm * u[:, None]),
            "ss": ws(fs * s[:, None]), "su": ws(fs * u[:, None]), "uu": ws(fu * u[:, None]),
            "r": ws(r), "rr": ws(r * r),
            "rm": ws(r * g.m[:, None]), "rs": ws(r * s[:, None]), "ru": ws(r * u[:, None]),
        }
        with np.errstate(invalid="ignore", divide="ignore"):
            inv = np.where(n_w > 0, 1.0 / np.where(n_w > 0, n_w, 1.0), 0.0)
            mean = {k: S[k] * inv for k in ("m", "s", "u", "r")}

            def cov(xy: str, x: str, y: str) -> np.ndarray:
                return S[xy] * inv - mean[x] * mean[y]

            c = WindowCovariances(
                c_mm=cov("mm", "m", "m"), c_ms=cov("ms", "m", "s"), c_mu=cov("mu", "m", "u"),
                c_ss=cov("ss", "s", "s"), c_su=cov("su", "s", "u"), c_uu=cov("uu", "u", "u"),
                c_rm=cov("rm", "r", "m"), c_rs=cov("rs", "r", "s"), c_ru=cov("ru", "r", "u"),
                c_rr=cov("rr", "r", "r"))
        # A factor not listed for the whole window is dropped on that date: the level falls back.
        s_off, u_off = ~g.s_usable[:, None], ~g.u_usable[:, None]
        for name in ("c_ms", "c_ss", "c_su", "c_rs"):
            setattr(c, name, np.where(s_off, 0.0, getattr(c, name)))
        for name in ("c_mu", "c_su", "c_uu", "c_ru"):
            setattr(c, name, np.where(u_off, 0.0, getattr(c, name)))
        return c, n_w, count

    # ------------------------------------------------------------------ one pair, some stocks
    def _solve_pair(self, code: int, cols: np.ndarray, check: bool) -> dict[str, np.ndarray]:
        """All estimates for stock columns ``cols`` as if they used pair ``code`` on every date."""
        g = self.group(code)
        r_raw = self.inputs.returns[:, cols]
        valid = np.isfinite(r_raw) & self.market_ok[:, None]
        r = np.where(valid, center(r_raw), 0.0)
        complete = (valid == self.market_ok[:, None]).all(axis=0)
        parts = [(idx, kind) for idx, kind in ((np.flatnonzero(complete), None), (np.flatnonzero(~complete), "masked"))
                 if len(idx)]
        out: dict[str, np.ndarray] = {}
        for idx, kind in parts:
            whole = len(parts) == 1  # no scatter needed when one path covers every column
            est = self._estimate(code, g, r if whole else r[:, idx],
                                 None if kind is None else (valid if whole else valid[:, idx]), check)
            if whole:
                out = est
                break
            for key, arr in est.items():
                out.setdefault(key, np.empty((self.T, len(cols)), dtype=arr.dtype))[:, idx] = arr
        self._time_safe_returns(code, out, r_raw)
        return out

    def _estimate(self, code: int, g: _GroupFactors, r: np.ndarray, valid: np.ndarray | None,
                  check: bool) -> dict[str, np.ndarray]:
        """Estimates for centred returns r (T, n); valid=None when every market day is valid."""
        cov, _, count = self._covariances(g, r, valid)
        est = solve_cascade(cov)
        flags = est["flags"]
        count = np.broadcast_to(count, flags.shape)
        enough = count >= self.params.min_obs_effective - 0.5
        if check:
            check_normal_equations(cov, est, enough & (flags & NULLING_FLAGS == 0))
        flags[~enough] |= Flag.INSUFFICIENT_HISTORY
        sec, sub = self.inputs.assignment.pairs[code]
        flags[~g.s_usable] |= Flag.NO_SECTOR_ETF if sec is None else Flag.SECTOR_FALLBACK
        flags[~g.u_usable] |= Flag.NO_SUBSECTOR_ETF if sub is None else Flag.SUBSECTOR_FALLBACK
        # Sample (ddof=1) variance for a uniform window; weighted population one for EWMA.
        with np.errstate(invalid="ignore", divide="ignore"):
            c_rr = np.broadcast_to(cov.c_rr, count.shape)
            est["stock_var"] = c_rr * (count / (count - 1.0)) if self.decay == 1.0 else c_rr.copy()
        est["n_obs"] = count.astype(np.float64)
        null_rows = (flags & NULLING_FLAGS) != 0
        if null_rows.any():
            for key, arr in est.items():
                if key not in ("flags", "n_obs"):
                    np.copyto(arr, np.nan, where=null_rows)
        return est

    def _time_safe_returns(self, code: int, est: dict[str, np.ndarray], r_raw: np.ndarray) -> None:
        """Day-t factor and residual returns from hedge ratios estimated through t−1."""
        sec, sub = self.inputs.assignment.pairs[code]
        cols = self.inputs.etfs
        m = self._raw[:, cols.get_loc(self.params.market_etf)][:, None]
        s = self._raw[:, cols.get_loc(sec)][:, None] if sec else np.zeros_like(m)
        u = self._raw[:, cols.get_loc(sub)][:, None] if sub else np.zeros_like(m)
        hr = {k: _lag(est[k]) for k in HR_FIELDS}
        r_ok = np.isfinite(r_raw)
        for k in (1, 2, 3):
            f = factor_return(k, hr.__getitem__, m, s, u, r_ok)
            est[f"l{k}_cfr"] = f
            est[f"l{k}_rr"] = r_raw - f

    # ------------------------------------------------------------------ blocks
    def blocks(self, block_size: int = 1024, check: bool = True, workers: int | None = None) -> Iterator[CascadeBlock]:
        """Yield results for blocks of stocks that share their latest ETF pair (≤ block_size each).

        Blocks are independent, and numpy releases the GIL in the heavy loops, so ``workers``
        threads (default: the machine's cores, at most 4) compute them concurrently; at most
        workers + 1 finished-or-running blocks are held, so memory stays bounded.
        """
        codes = self.inputs.assignment.codes
        home = codes[-1] if len(codes) else np.zeros(0, dtype=np.int32)
        chunks = [members[start:start + block_size]
                  for code in np.unique(home) for members in [np.flatnonzero(home == code)]
                  for start in range(0, len(members), block_size)]
        for code in np.unique(codes):  # build the shared group factors before threads start
            self.group(int(code))
        workers = workers or min(4, os.cpu_count() or 1)
        if workers <= 1:
            for cols in chunks:
                yield self._block(cols, check)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque = deque()
            for cols in chunks:
                pending.append(pool.submit(self._block, cols, check))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _block(self, cols: np.ndarray, check: bool) -> CascadeBlock:
        codes = self.inputs.assignment.codes[:, cols]
        static = (codes == codes[:1]).all(axis=0)
        values: dict[str, np.ndarray] = {}
        present = [int(c) for c in np.unique(codes)]
        last = codes[-1]
        if len(cols) and (last == last[0]).all():
            # The usual block (see blocks()): every stock holds one pair on the last date, so that
            # pair's estimates cover every column; they become the block's arrays as they are, and
            # only reclassified stocks' earlier dates are overwritten below. Stocks that never
            # moved hold that pair alone, so no column is scattered.
            base = int(last[0])
            values = self._solve_pair(base, cols, check)
            present.remove(base)
        for code in present:
            users = np.flatnonzero((codes == code).any(axis=0))
            est = self._solve_pair(code, cols[users], check)
            fixed, moving = users[static[users]], np.flatnonzero(~static[users])
            for key, arr in est.items():
                target = values.get(key)
                if target is None:  # every (date, stock) is covered by exactly one pair
                    target = values[key] = np.empty((self.T, len(cols)), dtype=arr.dtype)
                if len(fixed):
                    target[:, fixed] = arr[:, static[users]]
                for j in moving:  # reclassified stocks: take each date from the pair held then
                    on = codes[:, users[j]] == code
                    if key in LAGGED_FIELDS:  # returns on day t follow the hedge held at t−1
                        on = np.concatenate([on[:1], on[:-1]])
                    target[on, users[j]] = arr[on, j]
        r_raw = self.inputs.returns[:, cols]
        values["returns_gross"] = r_raw.copy()
        values.update(_volatility(r_raw))
        values.update(lstar(values, self.params.lstar_threshold))
        if check:
            check_result_identities(values, self.held_etf_returns(codes))
        return CascadeBlock([str(t) for t in self.inputs.tickers[cols]], values, codes, cols)

    def held_etf_returns(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Raw returns of the ETFs each stock held the day before: {'m','s','u'} → (T, n)."""
        lagged = np.vstack([codes[:1], codes[:-1]])
        cols = self.inputs.etfs
        m = self._raw[:, cols.get_loc(self.params.market_etf)]
        out = {"m": np.broadcast_to(m[:, None], codes.shape).copy(),
               "s": np.zeros(codes.shape), "u": np.zeros(codes.shape)}
        for code in np.unique(lagged):
            on = lagged == code
            for key, etf in zip(("s", "u"), self.inputs.assignment.pairs[code]):
                if etf is not None:
                    out[key][on] = np.broadcast_to(self._raw[:, cols.get_loc(etf)][:, None], codes.shape)[on]
        return out

    def link_betas(self, keep: np.ndarray | None = None) -> pd.DataFrame:
        """Link betas per ETF pair and date, from the ETFs' full windows (long frame).

        Rows: pair by pair (in ``assignment.pairs`` order, the market-only pair left out), then
        date; columns ``date, sector_etf, subsector_etf, lambda_sm, lambda_um, lambda_us``.
        keep: (T,) bool, the dates to return (default all); the windows still span every date.
        """
        dates = self.inputs.dates
        rows = np.arange(self.T) if keep is None else np.flatnonzero(keep)
        pairs = [(code, pair) for code, pair in enumerate(self.inputs.assignment.pairs) if pair != (None, None)]
        lambdas: dict[str, list[np.ndarray]] = {k: [] for k in LINK_FIELDS}
        for code, _ in pairs:
            g = self.group(code)
            zero = np.zeros((self.T, 1))
            cov, _, count = self._covariances(g, zero, None)
            # Only the kept dates go on: every step from the window moments is elementwise per date.
            cov = WindowCovariances(**{name: arr[rows] for name, arr in vars(cov).items()})
            cov.c_rr = np.ones_like(cov.c_mm)
            est = solve_cascade(cov)
            ok = (count[rows, 0] >= self.params.min_obs_effective) & self.market_ok[rows]
            s_off, u_off = ~g.s_usable[rows], ~g.u_usable[rows]
            for k in LINK_FIELDS:  # a factor not listed for the whole window has no link beta
                off = {"lambda_sm": s_off, "lambda_um": u_off, "lambda_us": s_off | u_off}[k]
                lambdas[k].append(np.where(ok & ~off, est[k][:, 0], np.nan))
        n = len(rows)
        labels = {}
        for i, name in enumerate(("sector_etf", "subsector_etf")):
            column = np.repeat(np.array([pair[i] for _, pair in pairs], dtype=object), n)
            # As the per-pair frames concatenated: text, or object when some pair has no such ETF.
            labels[name] = pd.Series(column, dtype=object) if any(pair[i] is None for _, pair in pairs) else column
        frame = pd.DataFrame({
            "date": np.tile(dates[rows].to_numpy(), len(pairs)), **labels,
            **{k: np.concatenate(v) if v else np.zeros(0) for k, v in lambdas.items()}})
        return frame

def _lag(x: np.ndarray) -> np.ndarray:
    """x shifted one row down (row t holds x[t−1]); row 0 is NaN."""
    out = np.full_like(x, np.nan)
    out[1:] = x[:-1]
    return out


def factor_return(level: int, hr_lagged: Callable[[str], np.ndarray], m: np.ndarray, s: np.ndarray,
                  u: np.ndarray, r_ok: np.ndarray) -> np.ndarray:
    """``l{level}_cfr``: day t's factor return −Σ HR_{t−1}·f_t of the level's hedge.

    hr_lagged(field): the hedge ratio held over day t (estimated through t−1); m, s, u: raw
    returns of the market, sector and subsector ETF held (0 where a leg has no ETF); all
    broadcast to (T, n). NaN where the stock did not trade (``r_ok`` False).
    """
    with np.errstate(invalid="ignore"):
        if level == 1:
            f = -(hr_lagged("l1_mkt_hr") * m)
        elif level == 2:
            f = -(hr_lagged("l2_mkt_hr") * m + hr_lagged("l2_sec_hr") * s)
        else:
            f = -(hr_lagged("l3_mkt_hr") * m + hr_lagged("l3_sec_hr") * s + hr_lagged("l3_sub_hr") * u)
    return np.where(r_ok, f, np.nan)


def _volatility(r: np.ndarray) -> dict[str, np.ndarray]:
    """vol_23d and vol_252d_ann: sample std of the last 23 / 252 trading days × √252."""
    ok = np.isfinite(r)
    x = np.where(ok, center(r), 0.0)
    out = {}
    for name, window, need in (("vol_23d", VOL_SHORT_WINDOW, 15), ("vol_252d_ann", VOL_LONG_WINDOW, 126)):
        n = window_sums(ok.astype(np.float64), window)
        s1, s2 = window_sums(x, window), window_sums(x * x, window)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (s2 - s1 * s1 / n) / (n - 1.0)
        out[name] = np.where(n >= need, np.sqrt(np.maximum(var, 0.0)) * ANNUALISE, np.nan)
    return out


def check_result_identities(values: dict[str, np.ndarray], etf_raw: dict[str, np.ndarray],
                            tol_share: float = 1e-9, tol_rep: float = 1e-12) -> None:
    """Build-time identities over a block, recomputed from the published fields.

    - shares: l1/l2/l3 ER plus residual share = 1 wherever defined;
    - replication: r_t = −Σ HR_{k,t−1}·f_{k,t} + rr_t with the raw ETF returns ``etf_raw``
      ({'m','s','u'} → (T, n) arrays of the ETFs each stock held at t−1).
    Raises IdentityViolation naming the broken identity.
    """
    from riskstrata.errors import IdentityViolation

    for level, parts in ((1, ("l1_mkt_er", "l1_res_er")), (2, ("l2_mkt_er", "l2_sec_er", "l2_res_er")),
                         (3, ("l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er"))):
        total = sum(values[p] for p in parts)
        bad = np.isfinite(total) & (np.abs(total - 1.0) > tol_share)
        if bad.any():
            raise IdentityViolation(f"L{level} explained-risk shares do not sum to 1 on {int(bad.sum())} stock-days")
    legs = {1: (("l1_mkt_hr", "m"),), 2: (("l2_mkt_hr", "m"), ("l2_sec_hr", "s")),
            3: (("l3_mkt_hr", "m"), ("l3_sec_hr", "s"), ("l3_sub_hr", "u"))}
    r = values["returns_gross"]
    for level, pairs in legs.items():
        hedge = np.zeros_like(r)
        for hr_name, f in pairs:
            hr_lag = np.full_like(r, np.nan)
            hr_lag[1:] = values[hr_name][:-1]
            hedge = hedge + hr_lag * etf_raw[f]
        rebuilt = -hedge + values[f"l{level}_rr"]
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(rebuilt) & (np.abs(rebuilt - r) > tol_rep * np.maximum(1.0, np.abs(r)))
        if bad.any():
            raise IdentityViolation(f"L{level} replication identity r = −ΣHR·f + rr fails on {int(bad.sum())} stock-days")


# Fields equal to another by construction (L1, L2 and L3 share the market leg, L2 and L3 the
# sector leg: solve_cascade fills them from one array, and nulling and reclassification treat
# them alike): a fitted result holds one array for each group.
SAME_AS = {"l2_mkt_er": "l1_mkt_er", "l3_mkt_er": "l1_mkt_er", "l3_sec_er": "l2_sec_er"}
# What a fitted result holds: the fields the regressions produce that nothing cheaper recovers,
# and the volatilities (a rolling sum over the whole history: no date of them is cheap alone).
# Every other field is elementwise arithmetic on these, the inputs and the assignment codes
# (hedge ratios from betas and link betas, residual shares, time-safe factor and residual
# returns, L*) or a window count: it is derived, stock block by stock block, by the very
# functions the engine uses (same bits), when first read; a snapshot or a history derives only
# its cells. On 2,870 × 2,520 that holds 13 arrays (0.7 GB) instead of 29 (1.65 GB).
HELD_FIELDS = ("l1_mkt_beta", "l2_sec_beta", "l3_sub_beta", "lambda_sm", "lambda_um", "lambda_us",
               "l1_mkt_er", "l2_sec_er", "l3_sub_er", "stock_var", "flags", "vol_23d", "vol_252d_ann")
# Stocks per block when fitting in memory. Every stock's numbers are computed column by column,
# so the block size changes no result (all 35 fields of 2,870 × 2,520 hash the same at 32 and
# 128); small blocks hold fewer (T, n) temporaries next to the result and each array of a block
# (2,520 × 32 × 8 B = 0.6 MB) stays in cache: against 128, peak −0.15 GB and −0.7 s CPU here.
FIT_BLOCK_SIZE = 32


def _fresh_rows(n: int, t: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised (n, t) C-order array in its own anonymous memory map.

    numpy asks the kernel for transparent huge pages on every large array; on the 2-core VMs
    this project runs on, faulting in 2 MB pages cost 3–4× more system time than 4 kB ones
    (1.7 GB of results: ≈2 s against ≈0.6 s). A plain private map gets ordinary pages; it is
    returned to the system when the array is freed.
    """
    dtype = np.dtype(dtype)
    nbytes = n * t * dtype.itemsize
    if nbytes < (1 << 22):  # small arrays: the ordinary allocator
        return np.empty((n, t), dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).reshape(n, t)


def _put_rows(dest: np.ndarray, cols: np.ndarray, arr: np.ndarray, step: int = 128) -> None:
    """dest[cols] = arr.T for stock-major dest (N, T) and a block's (T, n) array, in date slabs.

    Transposing a slab of 128 dates at a time keeps source and destination in cache: half the
    time of one whole-block transposed copy (≈20 ms against ≈45 ms per field on 2,870 × 2,520).
    """
    for start in range(0, arr.shape[0], step):
        dest[cols, start:start + step] = arr[start:start + step].T


class _Recipes:
    """Derives a fitted result's fields that are not held (see HELD_FIELDS), block by block.

    Every recipe is elementwise per stock and date, or looks back along one stock's dates (the
    hedge held over day t, L* chosen at t−1, the window count), so a field can be derived for
    all stocks on a few dates (a snapshot) or for one stock (a history) at the cost of those
    cells, with the same bits as the whole array.
    """

    def __init__(self, engine: CascadeEngine, blocks: list[np.ndarray]) -> None:
        inputs, params = engine.inputs, engine.params
        self.returns = inputs.returns
        self.blocks = blocks
        self.window = params.window
        self.lstar_threshold = params.lstar_threshold
        self.market_ok = engine.market_ok
        # Raw ETF returns (NaN → 0) with a column of zeros last, for a pair with no sector or
        # subsector ETF; per pair code, the column of its sector and subsector ETF.
        E = len(inputs.etfs)
        self.etf_raw = np.hstack([engine._raw, np.zeros((engine.T, 1))])
        self.market = self.etf_raw[:, inputs.etf_column(params.market_etf)][:, None]
        col = {name: j for j, name in enumerate(inputs.etfs)}
        self.etf_col = {key: np.array([col[p[i]] if p[i] is not None else E for p in inputs.assignment.pairs],
                                      dtype=np.intp)
                        for i, key in enumerate(("s", "u"))}
        self.codes = inputs.assignment.codes

    def __call__(self, name: str, held: Callable[[str], np.ndarray | None],
                 rows: tuple[int, int] | None = None) -> np.ndarray:
        """Field ``name`` for every stock: (T, N), or (stop − start, N) for ``rows`` = (start, stop)."""
        T, N = self.returns.shape
        span = rows or (0, T)
        out: np.ndarray | None = None  # stock-major storage, as _assemble holds fields
        for cols in self.blocks:
            part = self._part(name, cols, held, span)
            if out is None:
                out = _fresh_rows(N, span[1] - span[0], part.dtype)
            _put_rows(out, cols, part)
        assert out is not None
        return out.T

    def column(self, name: str, held: Callable[[str], np.ndarray | None], j: int) -> np.ndarray:
        """Field ``name`` for stock column ``j`` only: (T,)."""
        return self._part(name, np.array([j]), held, (0, self.returns.shape[0]))[:, 0]

    def _part(self, name: str, cols: np.ndarray, held: Callable[[str], np.ndarray | None],
              rows: tuple[int, int]) -> np.ndarray:
        """Field ``name`` on stock columns ``cols`` and dates rows[0] ≤ t < rows[1]."""
        start, stop = rows
        arr = held(name)
        if arr is not None:
            return arr[start:stop, cols]

        def get(field_name: str, span: tuple[int, int] = rows) -> np.ndarray:
            return self._part(field_name, cols, held, span)

        def from_previous_row(make: Callable[[tuple[int, int]], np.ndarray]) -> np.ndarray:
            """make() over rows that start one date earlier (what day t needs of t−1), cut back."""
            return make(rows) if start == 0 else make((start - 1, stop))[1:]

        if name in HR_NAMES:
            return hedge_ratio(name, get)
        if name in RES_ER_NAMES:
            return residual_share(name, get)
        if name in SAME_AS:
            return get(SAME_AS[name])
        if name in ("l1_cfr", "l2_cfr", "l3_cfr"):
            lagged = self.codes[np.maximum(np.arange(start, stop) - 1, 0)][:, cols]  # the pair held over day t
            s, u = (np.take_along_axis(self.etf_raw[start:stop], self.etf_col[k][lagged], axis=1) for k in ("s", "u"))

            def hr_lagged(f: str) -> np.ndarray:
                return from_previous_row(lambda span: _lag(get(f, span)))

            return factor_return(int(name[1]), hr_lagged, self.market[start:stop], s, u,
                                 np.isfinite(self.returns[start:stop, cols]))
        if name in ("l1_rr", "l2_rr", "l3_rr"):
            return self.returns[start:stop, cols] - get(f"l{name[1]}_cfr")
        if name == "lstar_level":
            return lstar_level(get("l2_sec_er"), get("l3_sub_er"), self.lstar_threshold)
        if name == "lstar_rr":
            need = ("l2_sec_er", "l3_sub_er", "l1_rr", "l2_rr", "l3_rr")
            return from_previous_row(lambda span: lstar({f: get(f, span) for f in need},
                                                        self.lstar_threshold)["lstar_rr"])
        if name == "n_obs":  # a count of whole days: exact from any row a full window back
            first = max(0, start - self.window + 1)
            valid = np.isfinite(self.returns[first:stop, cols]) & self.market_ok[first:stop, None]
            return window_sums(valid.astype(np.float64), self.window)[start - first:]
        if name == "returns_gross":
            return self.returns[start:stop, cols]
        raise KeyError(name)


def _assemble(engine: CascadeEngine, check: bool) -> FieldMap:
    """The fitted fields over every block, aligned to the prepared tickers.

    Each held field is stored stock-major, as an (N, T) C-order array, and handed out as its
    transpose, a (T, N) Fortran-order view: a block's stocks are then whole contiguous rows,
    each written once. Writing a block's columns into a (T, N) C-order array instead touches
    every cache line of the output once per block, which cost as much as the fit itself.
    ``returns_gross`` is the prepared returns array itself, fields in SAME_AS share one array,
    and fields outside HELD_FIELDS are derived when first read. Arrays are read-only.
    """
    inputs = engine.inputs
    T, N = len(inputs.dates), len(inputs.tickers)
    storage: dict[str, np.ndarray] = {}
    keys: list[str] = []
    blocks: list[np.ndarray] = []
    for block in engine.blocks(block_size=FIT_BLOCK_SIZE, check=check):
        if not keys:
            keys = list(block.values)
        blocks.append(block.cols)
        for key in HELD_FIELDS:
            arr = block.values[key]
            dest = storage.get(key)
            if dest is None:
                dest = storage[key] = _fresh_rows(N, T, arr.dtype)
            _put_rows(dest, block.cols, arr)
    held = {key: arr.T for key, arr in storage.items()}  # one view per array: aliases stay `is`-equal
    held.update((alias, held[source]) for alias, source in SAME_AS.items())
    held["returns_gross"] = inputs.returns
    for arr in held.values():
        arr.flags.writeable = False
    return FieldMap(keys, held, _Recipes(engine, blocks))


def fit_cascade(returns: pd.DataFrame, etf_returns: pd.DataFrame, assignments: pd.DataFrame | None = None, *,
                market_etf: str = "SPY", window: int = 252, halflife: float | None = None,
                min_obs: int | None = None, check: bool = True):
    """Fit Model A (the L1/L2/L3 ETF cascade) for every stock and date.

    returns: (T dates × N tickers) simple daily returns (decimal), NaN = no trade that day.
    etf_returns: (T × E) daily returns of the market ETF and every ETF named in ``assignments``.
    assignments: per ticker ``sector_etf``/``subsector_etf`` (index ticker), or dated rows with
        ``ticker, valid_from, sector_etf, subsector_etf``; a missing ticker is hedged with the
        market only. An ETF can be a ticker too (a sector ETF with no sector ETF of its own is
        decomposed on SPY alone).
    window: trading days in the rolling window; halflife: days, for exponential weights inside it.
    min_obs: valid days needed for an estimate (default max(16, window // 4)).
    check: assert the share and replication identities; a violation raises IdentityViolation.

    Returns a :class:`~riskstrata.cascade.result.CascadeResult`. Its ``values`` hold the
    regression outputs and volatilities (HELD_FIELDS); hedge ratios, residual shares, time-safe returns, L*
    and n_obs are derived from them, exactly, when first read, then kept.
    """
    from riskstrata.cascade.result import CascadeResult

    params = CascadeParams(market_etf=market_etf, window=window, halflife=halflife, min_obs=min_obs)
    inputs = prepare_inputs(returns, etf_returns, assignments, params)
    engine = CascadeEngine(inputs, params)
    values = _assemble(engine, check)
    return CascadeResult(
        dates=inputs.dates, tickers=inputs.tickers, values=values, codes=inputs.assignment.codes,
        pairs=inputs.assignment.pairs, link_betas=engine.link_betas(),
        params={"market_etf": market_etf, "window": window, "halflife": halflife,
                "min_obs": params.min_obs_effective},
        diagnostics=inputs.diagnostics)
