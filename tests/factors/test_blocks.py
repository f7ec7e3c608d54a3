"""The streamed Model B build: date blocks equal one block; the batched kernels equal their references.

A block computes its descriptors on the trailing data they need (lookback_start), so a build cut
into blocks whose boundaries fall inside every descriptor window (252 days, GROWTH's year) must
give the one-block build's numbers, up to floating-point rounding (1e-12). The batched regression
and the closed-form imputation must equal the per-date least squares they replace.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.factors.blocks import BlockArray
from riskstrata.factors.exposures import _impute_one_day, impute, row_nanmedian
from riskstrata.factors.model import factor_block, fit_factor_model, lookback_start, prepare_model
from riskstrata.factors.regression import _regress_one_day, cross_sectional_regression
from riskstrata.factors.spec import load_spec
from riskstrata.services import factors as svc
from riskstrata.services.demo import load_synthetic_into_store
from tests.factors.test_model import synthetic_inputs
from tests.factors.test_regression import FACTORS, IND_COLS, run, simulate

BLOCK = 45  # cuts every 252-day window and the year-ago GROWTH lookup several times


def close(a: np.ndarray, b: np.ndarray, what: str, tol: float = 1e-12) -> None:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}: NaN pattern")
    ok = np.isfinite(a)
    scale = np.maximum(np.abs(a[ok]), 1.0)
    assert (np.abs(a[ok] - b[ok]) / scale).max(initial=0.0) <= tol, what


def same_model(x, y) -> None:
    """Every field of two fitted models equal to 1e-12 (relative above 1), labels exactly."""
    assert x.factors == y.factors and x.notes == y.notes and x.status == y.status
    assert x.regression.notes == y.regression.notes
    for name in ("exposures", "imputed", "universe"):
        close(np.asarray(getattr(x, name)), np.asarray(getattr(y, name)), name)
    rx, ry = x.regression, y.regression
    for name in ("factor_returns", "t_stats", "r2", "n_names", "condition_number", "constraint_residual",
                 "specific_returns", "thin_industries"):
        close(getattr(rx, name).to_numpy(dtype=float), getattr(ry, name).to_numpy(dtype=float), name)
    close(x.covariance.adjusted, y.covariance.adjusted, "covariance")
    close(x.covariance.raw, y.covariance.raw, "raw covariance")
    close(x.specific_var.to_numpy(), y.specific_var.to_numpy(), "specific_var")
    close(x.coverage.to_numpy(), y.coverage.to_numpy(), "coverage")


@pytest.fixture(scope="module")
def market():
    return synthetic_market(n_stocks=70, n_days=420, seed=21, styles=True)


@pytest.fixture(scope="module")
def one_block(market):
    return fit_factor_model(synthetic_inputs(market), load_spec("US21"), block_dates=None)


def test_blocks_cutting_the_descriptor_windows_equal_one_block(market, one_block, tmp_path):
    spec = load_spec("US21")
    assert lookback_start(one_block.dates, BLOCK * 6) < BLOCK * 6 - 252  # GROWTH's year reaches further back
    blocks = fit_factor_model(synthetic_inputs(market), spec, block_dates=BLOCK)
    same_model(one_block, blocks)
    spilled = fit_factor_model(synthetic_inputs(market), spec, block_dates=BLOCK, spill_dir=tmp_path)
    assert isinstance(spilled.exposures, BlockArray) and len(list(tmp_path.glob("x_*.npy"))) == -(-420 // BLOCK)
    same_model(one_block, spilled)
    # What a portfolio reads from a streamed result: one date's rows, without loading all dates.
    i = len(one_block.dates) - 3
    pd.testing.assert_frame_equal(spilled.exposures_on(one_block.dates[i]), one_block.exposures_on(one_block.dates[i]),
                                  rtol=1e-12, atol=1e-12)


def test_one_block_step_given_the_previous_block_equals_the_same_dates_of_a_build(market, one_block):
    """The step a daily update reuses: dates [a, b) from the trailing panels and the carry of a − 1."""
    mf = prepare_model(synthetic_inputs(market), load_spec("US21"))
    T = len(mf.dates)
    first = factor_block(mf, 0, T - 5)
    last = factor_block(mf, T - 5, T, first.carry)
    cols = [mf.design.index(f) for f in one_block.factors]
    close(last.exposures[..., cols], one_block.exposures[T - 5:], "exposures")
    close(last.regression.factor_returns.to_numpy()[:, cols], one_block.factor_returns.to_numpy()[T - 5:], "f")
    close(last.regression.specific_returns.to_numpy(), one_block.regression.specific_returns.to_numpy()[T - 5:],
          "regression residuals")
    # Every name with exposures gets a specific return (the regression's universe a subset).
    in_reg = np.isfinite(last.regression.specific_returns.to_numpy())
    assert (np.isfinite(last.specific) >= in_reg).all() and in_reg.any()


def test_the_store_build_publishes_the_streamed_exposures_block_by_block(tmp_path, monkeypatch):
    market = synthetic_market(n_stocks=60, n_days=330, seed=23, styles=True)
    store = Store(tmp_path / "store")
    load_synthetic_into_store(store, market)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = scratch / f"{svc.SPILL_PREFIX}{int(gone.stdout)}-abc"   # a killed build's scratch
    stale.mkdir()
    (stale / "x_000000_000100.npy").write_bytes(b"0" * 1000)
    info = svc.build_factor_model(store, "US21", block_dates=100)
    assert not stale.exists() and list(scratch.iterdir()) == []   # the stale one and its own: removed
    inputs = svc.load_factor_inputs(store)
    want = fit_factor_model(inputs, load_spec("US21"), block_dates=None)
    files = store.model_files("factors_US21", info["version"])
    assert len(files) == 4   # one part per block of 100 dates
    stored = store.read_model("factors_US21", version=info["version"])
    T, N = len(want.dates), len(want.tickers)
    dense = np.asarray(want.exposures).reshape(T * N, -1)
    keep = ~np.isnan(dense).all(axis=1)
    assert len(stored) == keep.sum() and list(stored.columns[3:-1]) == want.factors
    close(stored[want.factors].to_numpy(), dense[keep], "stored exposures")
    np.testing.assert_array_equal(stored["security_id"].to_numpy(), np.tile(np.asarray(want.tickers), T)[keep])
    np.testing.assert_array_equal(stored["imputed"].to_numpy(), np.asarray(want.imputed).reshape(T * N, -1)[keep].any(1))
    fr = store.read_model("factor_returns_US21", version=store.model_meta("factors_US21")["companions"]["factor_returns"])
    close(fr[want.factors].to_numpy(), want.factor_returns.to_numpy(), "stored factor returns")


def test_block_array_reads_rows_and_blocks(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 4, 3))
    bounds, paths = [(0, 4), (4, 7), (7, 10)], []
    for a, b in bounds:
        paths.append(tmp_path / f"{a}.npy")
        np.save(paths[-1], x[a:b])
    arr = BlockArray(bounds, paths, (4, 3), np.float64)
    np.testing.assert_array_equal(np.asarray(arr), x)
    np.testing.assert_array_equal(arr[5], x[5])
    np.testing.assert_array_equal(arr[-1], x[-1])
    np.testing.assert_array_equal(arr[np.array([1, 6, 9])], x[[1, 6, 9]])
    np.testing.assert_array_equal(arr[2:8], x[2:8])
    np.testing.assert_array_equal(arr[5, :, 2], x[5, :, 2])
    sub = arr.select(np.array([2, 0]))
    assert sub.shape == (10, 4, 2)
    np.testing.assert_array_equal(np.asarray(sub), x[..., [2, 0]])
    np.testing.assert_array_equal(np.asarray(sub.select(np.array([1]))), x[..., [0]])
    with pytest.raises(IndexError):
        arr[10]


def test_batched_regression_equals_the_per_date_least_squares_it_replaces():
    d = simulate(T=12, N=400, seed=4)
    d["exposures"][3, :, 2] = 0.7        # a style equal for all: collinear with the market (rank deficient)
    d["exposures"][5, :, 4] = 0.0        # a style nobody is exposed to
    d["exposures"][7, :, IND_COLS[1]] = 0.0
    d["exposures"][7, :2, IND_COLS[1]] = 1.0  # an industry of two names: thin
    d["exposures"][7, :2, IND_COLS[0]] = 0.0
    res = run(d)
    is_ind = np.zeros(len(FACTORS), bool)
    is_ind[IND_COLS] = True
    for t in range(12):
        day = _regress_one_day(d["returns"][t], d["exposures"][t], d["weights"][t], d["caps"][t], is_ind, FACTORS, 3)
        close(res.factor_returns.to_numpy()[t], day.f, f"f on {t}", 1e-12)
        close(res.t_stats.to_numpy()[t], day.t, f"t on {t}", 1e-11)
        close([res.r2.iloc[t], res.constraint_residual.iloc[t]], [day.r2, day.constraint_residual], f"r2 on {t}")
        close(res.condition_number.iloc[t], day.cond, f"cond on {t}", 1e-10)
        close(res.specific_returns.to_numpy()[t], day.specific, f"specific on {t}")
        assert res.notes.get(d["dates"][t], []) == day.notes
    assert res.condition_number.iloc[3] > 1e5     # solved by the SVD fallback, as before
    assert any("no name has a non-zero exposure" in n for n in res.notes[d["dates"][5]])
    assert res.thin_industries.iloc[7, IND_COLS[1]]
    # The constraint still holds on every date.
    assert (res.constraint_residual < 1e-15).all()


def test_row_medians_and_closed_form_imputation_equal_their_references():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 31))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[3] = np.nan
    x[4, :-1] = np.nan                       # one value
    x[5, :-2] = np.nan                       # two values: the mean of both
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanmedian(x, axis=1, keepdims=True)
    np.testing.assert_array_equal(row_nanmedian(x), want)

    T, N = 30, 80
    industry = rng.integers(-1, 5, size=(T, N))
    log_cap = rng.normal(22, 1.2, size=(T, N))
    log_cap[rng.random((T, N)) < 0.05] = np.nan
    z = rng.normal(size=(T, N))
    z[rng.random((T, N)) < 0.2] = np.nan
    z[7, 10:] = np.nan                        # too few names to fit: industry means
    log_cap[9] = 22.0                         # no spread of size: the least-squares fallback
    universe = rng.random((T, N)) < 0.9
    filled, mask = impute(z, industry, log_cap, universe)
    for t in range(T):
        have, missing = universe[t] & np.isfinite(z[t]), universe[t] & ~np.isfinite(z[t])
        if missing.any():
            ref = _impute_one_day(z[t], industry[t] + 1, log_cap[t], have, missing, int(industry.max()) + 2)
            close(filled[t, missing], ref, f"imputed on {t}", 1e-12)
    np.testing.assert_array_equal(mask, universe & np.isnan(z))
