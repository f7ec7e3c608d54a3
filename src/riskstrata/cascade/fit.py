"""Fit Model A on in-memory pandas data: the one entry point is :func:`fit_cascade`.

The work is split into blocks of stocks that share their ETFs (SPEC §6: the partitions Dask
would run). Inside a block every array is (T, n), one column per stock and ETF pair it holds:
moments come from :mod:`riskstrata.cascade.moments`, the algebra from
:mod:`riskstrata.cascade.kernel`. Stocks with no missing day share their pair's ETF moments;
the others get their own, masked to the days they traded, so every regression uses exactly
the stock's valid rows. Every step is elementwise per column along time, so a block of any
stocks, or of the last dates only (a daily update), gives the whole fit's numbers bit for bit.
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


def _listed_full_window(etf_returns: np.ndarray, window: int) -> np.ndarray:
    """(T, E) bool: each ETF has data on every row of the window ending at t (it is usable)."""
    listed = np.isfinite(etf_returns).astype(np.float64)
    return window_sums(listed, window) >= min(window, len(etf_returns)) - 0.5


# Dates × columns up to which a block is solved in one pass (CascadeEngine._solve_columns):
# a daily update's one or two dates of every stock, where numpy's per-call cost is the cost.
ONE_PASS_CELLS = 1 << 16
# Cells up to which several series' window sums are stacked into one window_sums call.
STACK_CELLS = 1 << 14


def _window_sums_of(series: dict[str, Callable[[], np.ndarray]], shape: tuple[int, ...], window: int, decay: float,
                    first: int) -> dict[str, np.ndarray]:
    """window_sums, on rows first … T − 1, of each series ``shape`` (T, n) that series[name]()
    makes: in one call when they are small (stacked along a new axis 1: every sum runs along
    time only, element by element, so stacking changes no bit), else one call each, each
    series made just before its call (no stacked copy, one large temporary at a time)."""
    if int(np.prod(shape)) * len(series) <= STACK_CELLS:
        sums = window_sums(np.stack([np.broadcast_to(make(), shape) for make in series.values()], axis=1),
                           window, decay, first)
        return {name: sums[:, i] for i, name in enumerate(series)}
    return {name: window_sums(np.broadcast_to(make(), shape), window, decay, first) for name, make in series.items()}


class CascadeEngine:
    """Runs the cascade block by block over prepared inputs (no I/O).

    A block's stocks are solved together as columns: column i is one stock with one ETF pair
    (its sector and subsector ETF), and every factor series is gathered per column, so stocks
    of any pairs go through one set of array operations. Every number is elementwise per column
    along time, so a column's numbers do not depend on the columns solved with it.
    """

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
        self._raw = np.nan_to_num(inputs.etf_returns, nan=0.0)
        E = len(inputs.etfs)
        # Per ETF column, with one more column last standing for "no ETF" (a pair's missing
        # level): centred zero-filled returns (the factors), raw returns with NaN → 0 (what a
        # hedge earns) and whether the ETF is listed for the whole window ending at t.
        none = np.zeros((T, 1))
        self._factors = np.hstack([np.nan_to_num(center(inputs.etf_returns), nan=0.0), none])
        self._raw_or_zero = np.hstack([self._raw, none])
        self._usable = np.column_stack([_listed_full_window(inputs.etf_returns, params.window),
                                        np.zeros(T, dtype=bool)])
        market = inputs.etf_column(params.market_etf)
        self._m = np.where(self.market_ok, self._factors[:, market], 0.0)[:, None]  # (T, 1)
        self._m_raw = self._raw[:, market][:, None]
        # Per pair code: the ETF column of its sector and of its subsector ETF (E = none; −1 = an
        # ETF these inputs lack, as in a partition that carries only the pairs its stocks hold).
        etf_col = {name: j for j, name in enumerate(inputs.etfs)}
        self._pair_etf_all = {key: np.array([etf_col.get(p[i], -1) if p[i] is not None else E
                                             for p in inputs.assignment.pairs], dtype=np.intp)
                              for i, key in enumerate(("s", "u"))}
        self._shared_sums: dict[int, np.ndarray] = {}
        self.T = T
        self._none = E

    def _pair_etfs(self, codes: np.ndarray | list[int] | int) -> tuple[np.ndarray, np.ndarray]:
        """The ETF columns (sector, subsector) of pair ``codes`` (any shape; E = no such ETF)."""
        sec, sub = self._pair_etf_all["s"][codes], self._pair_etf_all["u"][codes]
        if np.any(sec < 0) or np.any(sub < 0):
            missing = {self.inputs.assignment.pairs[int(c)] for c in np.unique(codes)
                       if min(self._pair_etf_all["s"][c], self._pair_etf_all["u"][c]) < 0}
            raise KeyError(f"ETF pairs {sorted(missing, key=str)} name ETFs with no returns in these inputs")
        return sec, sub

    # ------------------------------------------------------------------ moments
    # The window sums a covariance needs, in the order they are stacked for one window_sums call
    # (every sum runs along time only, element by element: stacking changes no bit of any of them).
    _FACTOR_SUMS = ("n_w", "m", "s", "u", "mm", "ms", "mu", "ss", "su", "uu", "count")
    _RETURN_SUMS = ("r", "rr", "rm", "rs", "ru")

    def _factor_sums(self, s: np.ndarray, u: np.ndarray, mask: np.ndarray, first: int = 0) -> dict[str, np.ndarray]:
        """``_FACTOR_SUMS`` → (T − first, n) window sums, on dates first … T − 1, of the weights, of
        the factors and of their products (``count``: valid days, = n_w for a uniform window),
        each factor restricted to the valid rows ``mask``. s, u, mask: (T, n) or (T, 1), broadcast."""
        W, d = self.params.window, self.decay
        m = self._m
        fm, fs, fu = m * mask, s * mask, u * mask  # each factor series restricted to the valid rows
        shape = np.broadcast_shapes(mask.shape, fs.shape, fu.shape)
        series = {"n_w": lambda: mask, "m": lambda: fm, "s": lambda: fs, "u": lambda: fu,
                  "mm": lambda: fm * m, "ms": lambda: fm * s, "mu": lambda: fm * u,
                  "ss": lambda: fs * s, "su": lambda: fs * u, "uu": lambda: fu * u}
        out = _window_sums_of(series, shape, W, d, first)
        out["count"] = out["n_w"] if d == 1.0 else window_sums(np.broadcast_to(mask, shape), W, 1.0, first)
        return out

    def _group_sums(self, code: int) -> dict[str, np.ndarray]:
        """:meth:`_factor_sums` ((T, 1) each) of pair ``code`` on every market day: shared by all
        the pair's stocks with no missing day, and by its link betas; computed once per pair."""
        if code not in self._shared_sums:
            self._share_sums(codes=[code])
        return self._shared_sums[code]

    def _covariances(self, S: dict[str, np.ndarray], s_usable: np.ndarray, u_usable: np.ndarray
                     ) -> WindowCovariances:
        """Window covariances from window sums ``S`` (``_FACTOR_SUMS``, and ``_RETURN_SUMS`` or
        none of them: then the covariances with r are 0 and c_rr is 1, what the link betas need).
        A factor not listed for the whole window (``*_usable`` False) is dropped on that date:
        its covariances are 0 and the level falls back. Elementwise; shapes broadcast."""
        n_w = S["n_w"]
        with np.errstate(invalid="ignore", divide="ignore"):
            inv = np.where(n_w > 0, 1.0 / np.where(n_w > 0, n_w, 1.0), 0.0)
            mean = {k: S[k] * inv for k in ("m", "s", "u", "r") if k in S}

            def cov(xy: str, x: str, y: str) -> np.ndarray:
                return S[xy] * inv - mean[x] * mean[y]

            has_r = "r" in S
            zero = np.zeros_like(n_w)
            c = WindowCovariances(
                c_mm=cov("mm", "m", "m"), c_ms=cov("ms", "m", "s"), c_mu=cov("mu", "m", "u"),
                c_ss=cov("ss", "s", "s"), c_su=cov("su", "s", "u"), c_uu=cov("uu", "u", "u"),
                c_rm=cov("rm", "r", "m") if has_r else zero, c_rs=cov("rs", "r", "s") if has_r else zero,
                c_ru=cov("ru", "r", "u") if has_r else zero, c_rr=cov("rr", "r", "r") if has_r else np.ones_like(n_w))
        s_off, u_off = ~s_usable, ~u_usable
        for name in ("c_ms", "c_ss", "c_su", "c_rs"):
            setattr(c, name, np.where(s_off, 0.0, getattr(c, name)))
        for name in ("c_mu", "c_su", "c_uu", "c_ru"):
            setattr(c, name, np.where(u_off, 0.0, getattr(c, name)))
        return c

    # ------------------------------------------------------------------ columns: a stock with a pair
    def _solve_columns(self, stocks: np.ndarray, pairs: np.ndarray, check: bool, start: int = 0
                       ) -> dict[str, np.ndarray]:
        """All estimates for columns i = (stock column ``stocks[i]``, pair code ``pairs[i]``), as if
        the stock held that pair on every date: (T − start, n) arrays for dates start … T − 1
        (the windows and the column means still see every date).

        Up to ONE_PASS_CELLS dates × columns (a daily update: every stock, a date or two) they
        go through one pass, each pair's shared sums gathered per column. A larger block (a
        build: the whole history) goes one group at a time — a pair's stocks with no missing
        day on the pair's (T, 1) sums, the stocks with gaps on their own — so no (T, n) array
        holds what one column would. Every step is elementwise per column: the same numbers.
        """
        n = len(stocks)
        # Stocks with no missing day share their pair's factor sums; the others get their own,
        # masked to the days they traded, so every regression uses exactly the stock's valid rows.
        market_ok = self.market_ok[:, None]
        complete = ((np.isfinite(self.inputs.returns[:, stocks]) & market_ok) == market_ok).all(axis=0)
        if (self.T - start) * n <= ONE_PASS_CELLS:
            return self._solve_group(stocks, pairs, complete, check, start)
        groups = [np.flatnonzero(complete & (pairs == code)) for code in np.unique(pairs[complete])]
        groups += [np.flatnonzero(~complete)] if not complete.all() else []
        if len(groups) == 1:
            return self._solve_group(stocks, pairs, complete, check, start)
        est: dict[str, np.ndarray] = {}
        for cols in groups:
            for key, arr in self._solve_group(stocks[cols], pairs[cols], complete[cols], check, start).items():
                est.setdefault(key, np.empty((self.T - start, n), dtype=arr.dtype))[:, cols] = arr
        return est

    def _solve_group(self, stocks: np.ndarray, pairs: np.ndarray, complete: np.ndarray, check: bool, start: int
                     ) -> dict[str, np.ndarray]:
        """:meth:`_solve_columns` for one group of columns (``complete``: the stock has no missing day)."""
        one_pair = bool((pairs == pairs[0]).all())
        sec, sub = self._pair_etfs(pairs[:1] if one_pair else pairs)  # (1,) broadcasts over the columns
        r_raw = self.inputs.returns[:, stocks]
        S = self._window_moments(r_raw, pairs, complete, sec, sub, start)
        cov, count = self._covariances(S, self._usable[start:, sec], self._usable[start:, sub]), S["count"]
        del S  # the window sums go before the solve allocates its outputs (their memory is reused)
        est = solve_cascade(cov)
        flags = est["flags"]
        count = np.broadcast_to(count, flags.shape)
        enough = count >= self.params.min_obs_effective - 0.5
        if check:
            check_normal_equations(cov, est, enough & (flags & NULLING_FLAGS == 0))
        flags[~enough] |= Flag.INSUFFICIENT_HISTORY
        flags |= np.where(self._usable[start:, sec], 0,
                          np.where(sec == self._none, Flag.NO_SECTOR_ETF, Flag.SECTOR_FALLBACK)).astype(np.int32)
        flags |= np.where(self._usable[start:, sub], 0,
                          np.where(sub == self._none, Flag.NO_SUBSECTOR_ETF, Flag.SUBSECTOR_FALLBACK)).astype(np.int32)
        # Sample (ddof=1) variance for a uniform window; weighted population one for EWMA.
        with np.errstate(invalid="ignore", divide="ignore"):
            est["stock_var"] = cov.c_rr * (count / (count - 1.0)) if self.decay == 1.0 else cov.c_rr.copy()
        est["n_obs"] = count.astype(np.float64)
        null_rows = (flags & NULLING_FLAGS) != 0
        if null_rows.any():
            for key, arr in est.items():
                if key not in ("flags", "n_obs"):
                    np.copyto(arr, np.nan, where=null_rows)
        self._time_safe_returns(est, r_raw[start:], sec, sub, start)
        return est

    def _window_moments(self, r_raw: np.ndarray, pairs: np.ndarray, complete: np.ndarray, sec: np.ndarray,
                        sub: np.ndarray, start: int) -> dict[str, np.ndarray]:
        """The window sums (``_FACTOR_SUMS`` and ``_RETURN_SUMS``) of a group's columns, on dates
        start … T − 1: r_raw (T, n) returns, pairs and complete (n,), sec and sub their ETF
        columns ((n,), or (1,) when the group holds one pair)."""
        rows, n = self.T - start, len(pairs)
        valid = np.isfinite(r_raw) & self.market_ok[:, None]
        r = np.where(valid, center(r_raw), 0.0)
        s, u = self._factors[:, sec], self._factors[:, sub]
        shared, which = np.unique(pairs[complete], return_inverse=True)
        if complete.all() and len(shared) == 1:  # one pair, no gaps: its (T, 1) sums as they are
            S = {k: v[start:] for k, v in self._group_sums(int(shared[0])).items()}
        elif not complete.any():  # every stock with gaps: their own sums
            S = self._factor_sums(s, u, valid.astype(np.float64), start)
        else:
            S = {k: np.empty((rows, n)) for k in self._FACTOR_SUMS}
            if len(shared):
                sums = [self._group_sums(int(code)) for code in shared]
                for k, arr in S.items():
                    arr[:, complete] = np.concatenate([g[k][start:] for g in sums], axis=1)[:, which]
            if not complete.all():
                masked = ~complete
                pick = (lambda x: x) if len(sec) == 1 else (lambda x: x[:, masked])  # noqa: E731
                own = self._factor_sums(pick(s), pick(u), valid[:, masked].astype(np.float64), start)
                for k, arr in S.items():
                    arr[:, masked] = own[k]
        m = self._m
        S.update(_window_sums_of({"r": lambda: r, "rr": lambda: r * r, "rm": lambda: r * m, "rs": lambda: r * s,
                                  "ru": lambda: r * u}, r.shape, self.params.window, self.decay, start))
        return S

    def _time_safe_returns(self, est: dict[str, np.ndarray], r_raw: np.ndarray, sec: np.ndarray, sub: np.ndarray,
                           start: int = 0) -> None:
        """Day-t factor and residual returns from hedge ratios estimated through t−1 (dates from
        ``start``; on the first of them the day before is not at hand and they are NaN).
        sec, sub: (n,) ETF column of each column's sector and subsector ETF."""
        m = self._m_raw[start:]
        s, u = self._raw_or_zero[start:, sec], self._raw_or_zero[start:, sub]
        hr = {k: _lag(est[k]) for k in HR_FIELDS}
        r_ok = np.isfinite(r_raw)
        for k in (1, 2, 3):
            f = factor_return(k, hr.__getitem__, m, s, u, r_ok)
            est[f"l{k}_cfr"] = f
            est[f"l{k}_rr"] = r_raw - f

    # ------------------------------------------------------------------ blocks
    def blocks(self, block_size: int = 1024, check: bool = True, workers: int | None = None,
               first_row: int = 0) -> Iterator[CascadeBlock]:
        """Yield results for blocks of stocks that share their latest ETF pair (≤ block_size each).

        first_row: the blocks' arrays hold dates first_row … T − 1 only (see :meth:`block`).

        Blocks are independent, and numpy releases the GIL in the heavy loops, so ``workers``
        threads (default: the machine's cores, at most 4) compute them concurrently; at most
        workers + 1 finished-or-running blocks are held, so memory stays bounded.
        """
        codes = self.inputs.assignment.codes
        home = codes[-1] if len(codes) else np.zeros(0, dtype=np.int32)
        chunks = [members[start:start + block_size]
                  for code in np.unique(home) for members in [np.flatnonzero(home == code)]
                  for start in range(0, len(members), block_size)]
        self._share_sums(first_row)
        workers = workers or min(4, os.cpu_count() or 1)
        if workers <= 1:
            for cols in chunks:
                yield self.block(cols, check, first_row)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque = deque()
            for cols in chunks:
                pending.append(pool.submit(self.block, cols, check, first_row))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _share_sums(self, first_row: int = 0, codes: list[int] | None = None) -> None:
        """The shared factor sums of pair ``codes`` (default: every pair held on dates
        first_row − 1 … T − 1) not yet computed, all in one window_sums call (and before any
        thread starts)."""
        if codes is None:
            codes = [int(c) for c in np.unique(self.inputs.assignment.codes[max(first_row - 1, 0):])]
        codes = [c for c in codes if c not in self._shared_sums]
        if not codes:
            return
        s, u = (self._factors[:, j] for j in self._pair_etfs(codes))
        sums = self._factor_sums(s, u, self.market_ok[:, None].astype(np.float64))
        self._shared_sums.update((code, {k: v[:, i:i + 1] for k, v in sums.items()}) for i, code in enumerate(codes))

    def block(self, cols: np.ndarray, check: bool = True, first_row: int = 0) -> CascadeBlock:
        """Every field of stock columns ``cols`` on dates first_row … T − 1.

        With first_row > 0 (a daily update needs the last date only), every number is the one
        the whole result has on that date, bit for bit: the windows and the column means still
        span every date, each step after the window sums is elementwise per date or looks back
        one date (the lagged hedge, L*), and the date before first_row is computed for that and
        dropped.
        """
        if not 0 <= first_row < max(self.T, 1):
            raise ValueError(f"first_row must be a date row (0 … {self.T - 1}), got {first_row}")
        start = max(first_row - 1, 0)
        codes = self.inputs.assignment.codes[start:, cols]
        # The pairs' shared sums in one call (none left to compute when blocks() did it before its threads).
        self._share_sums(codes=[int(c) for c in np.unique(codes)])
        n = len(cols)
        last = codes[-1] if len(codes) else np.zeros(n, dtype=np.int32)
        # One column per stock with the pair it holds on the last date, and one more per other
        # pair a reclassified stock held on an earlier date.
        moved = np.flatnonzero(~(codes == last).all(axis=0))
        extra = [(j, int(c)) for j in moved for c in np.unique(codes[:, j]) if c != last[j]]
        stocks = np.concatenate([np.arange(n), np.array([j for j, _ in extra], dtype=np.intp)])
        pairs = np.concatenate([last, np.array([c for _, c in extra], dtype=last.dtype)])
        est = self._solve_columns(cols[stocks], pairs, check, start)
        if not extra:
            values = est
        else:
            values = {key: arr[:, :n].copy() for key, arr in est.items()}
            for i, (j, code) in enumerate(extra, start=n):  # each date from the pair held then
                on = codes[:, j] == code
                lagged = np.concatenate([on[:1], on[:-1]])  # returns on day t follow the hedge held at t−1
                for key, arr in est.items():
                    where = lagged if key in LAGGED_FIELDS else on
                    values[key][where, j] = arr[where, i]
        r_raw = self.inputs.returns[:, cols]
        values["returns_gross"] = r_raw[start:].copy()
        values.update(_volatility(r_raw, start))
        values.update(lstar(values, self.params.lstar_threshold))
        if check:
            check_result_identities(values, self.held_etf_returns(codes, start))
        if first_row > start:  # the date before, there only for the lags
            values = {k: v[first_row - start:] for k, v in values.items()}
            codes = codes[first_row - start:]
        return CascadeBlock([str(t) for t in self.inputs.tickers[cols]], values, codes, cols)

    _block = block  # its earlier, private name (tests of mixed-pair blocks call it)

    def held_etf_returns(self, codes: np.ndarray, start: int = 0) -> dict[str, np.ndarray]:
        """Raw returns of the ETFs each stock held the day before: {'m','s','u'} → (T − start, n),
        for ``codes`` the assignment codes of dates start … T − 1 (on date ``start`` itself, the
        ETFs held that day)."""
        lagged = np.vstack([codes[:1], codes[:-1]])
        raw = self._raw_or_zero[start:]
        rows = np.arange(len(codes))[:, None]
        sec, sub = self._pair_etfs(lagged)
        return {"m": np.broadcast_to(self._m_raw[start:], codes.shape).copy(), "s": raw[rows, sec], "u": raw[rows, sub]}

    def link_betas(self, keep: np.ndarray | None = None) -> pd.DataFrame:
        """Link betas per ETF pair and date, from the ETFs' full windows (long frame).

        Rows: pair by pair (in ``assignment.pairs`` order, the market-only pair left out), then
        date; columns ``date, sector_etf, subsector_etf, lambda_sm, lambda_um, lambda_us``.
        keep: (T,) bool, the dates to return (default all); the windows still span every date.
        """
        dates = self.inputs.dates
        rows = np.arange(self.T) if keep is None else np.flatnonzero(keep)
        pairs = [(code, pair) for code, pair in enumerate(self.inputs.assignment.pairs) if pair != (None, None)]
        codes = [code for code, _ in pairs]
        self._share_sums(codes=codes)
        # Every pair at once, as columns: (kept dates, pairs); each step is elementwise per date.
        S = {k: np.concatenate([self._group_sums(code)[k][rows] for code in codes], axis=1) if codes
             else np.zeros((len(rows), 0)) for k in self._FACTOR_SUMS}
        sec, sub = self._pair_etfs(np.array(codes, dtype=np.intp))
        s_ok, u_ok = self._usable[rows][:, sec], self._usable[rows][:, sub]
        est = solve_cascade(self._covariances(S, s_ok, u_ok))
        ok = (S["count"] >= self.params.min_obs_effective) & self.market_ok[rows, None]
        # A factor not listed for the whole window has no link beta; rows pair by pair (.T).
        lambdas = {k: np.where(ok & listed, est[k], np.nan).T.reshape(-1)
                   for k, listed in (("lambda_sm", s_ok), ("lambda_um", u_ok), ("lambda_us", s_ok & u_ok))}
        n = len(rows)
        labels = {}
        for i, name in enumerate(("sector_etf", "subsector_etf")):
            column = np.repeat(np.array([pair[i] for _, pair in pairs], dtype=object), n)
            # As the per-pair frames concatenated: text, or object when some pair has no such ETF.
            labels[name] = pd.Series(column, dtype=object) if any(pair[i] is None for _, pair in pairs) else column
        return pd.DataFrame({
            "date": np.tile(dates[rows].to_numpy(), len(pairs)), **labels,
            **lambdas})


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


def _volatility(r: np.ndarray, first: int = 0) -> dict[str, np.ndarray]:
    """vol_23d and vol_252d_ann: sample std of the last 23 / 252 trading days × √252.

    r: (T, n) returns, NaN = missing; returns (T − first, n) arrays for dates first … T − 1.
    """
    ok = np.isfinite(r)
    x = np.where(ok, center(r), 0.0)
    series = {"n": lambda: ok.astype(np.float64), "s1": lambda: x, "s2": lambda: x * x}
    out = {}
    for name, window, need in (("vol_23d", VOL_SHORT_WINDOW, 15), ("vol_252d_ann", VOL_LONG_WINDOW, 126)):
        sums = _window_sums_of(series, x.shape, window, 1.0, first)
        n, s1, s2 = sums["n"], sums["s1"], sums["s2"]
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
