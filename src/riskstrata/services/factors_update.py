"""Daily update of Model B (a factor-model spec): the store's new days without recomputing old exposures.

What a build spends its time on is the descriptors (252-day windows per name and date) behind the
exposures. An update computes descriptors and exposures only for the new dates (and the model's
last date, as a check), on the trailing panels they need (:func:`~riskstrata.factors.model.
lookback_start`), and takes every older date's exposures from the published version. Everything
downstream is then computed from the whole history, exactly as a build does, by the same code:
the regression of every date (from the exposures: cheap next to the descriptors, and it gives the
factor returns, the specific returns and the regression notes a build has), specific risk, the
factor covariance with its eigen adjustment (whose costly simulations are reused from the
published version on the dates it ran them: the same returns give the same bias, common random
numbers; only new dates simulate), the factor status and validation. The update is the
build's :func:`~riskstrata.factors.model.fit_factor_model` with a ``block_source`` that reads old
dates from the store, so it equals a full rebuild of the same data up to floating-point rounding
(≲ 1e-13; the tests hold it to 1e-10 on every stored field). It publishes a new version of every
part, the exposures model last, like a build: readers never see a mix.

It refuses (DataValidationError, naming ``riskstrata factors build --model SPEC``) what it cannot
make equal to a rebuild: a version built before builds recorded what an update needs, another
spec than the version's, trading days inside the model that changed, and data changed behind the
published numbers — checked where a change shows: the model's last date's exposures recomputed
from today's panels, and every old date's factor returns recomputed from today's returns and caps,
must equal the published ones. A fundamentals correction whose effect stays in old dates'
exposures only is not seen: rebuild after a backfill.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError, ModelNotBuilt, StoreError
from riskstrata.factors.model import (BlockCarry, FactorBlock, ModelFrame, Progress, block_exposures, finish_block,
                                      fit_factor_model)
from riskstrata.factors.spec import ModelSpec, load_spec

TOLERANCE = 1e-10  # a recomputed published number differing by more (relative above 1): data changed


def _rebuild(spec: str, why: str) -> DataValidationError:
    return DataValidationError(f"Model B ({spec}) cannot be updated exactly: {why}; "
                               f"run `riskstrata factors build --model {spec}`")


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: not equal within TOLERANCE (relative above 1), NaN patterns included."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore"):
        far = np.abs(a - b) > TOLERANCE * np.maximum(np.maximum(np.abs(a), np.abs(b)), 1.0)
    return far | (np.isnan(a) != np.isnan(b))


def update_factor_model(store: Store, spec: str | ModelSpec = "US21", progress: Progress | None = None) -> dict:
    """Append the store's trading days after the current version of ``factors_<spec>``.

    spec: a spec's name (the version's own spec file is re-read: a packaged spec, or the TOML it
    was built from) or the ModelSpec itself (as :func:`~riskstrata.services.factors.build_factor_model`
    takes it); progress(stage) as each stage starts.

    Returns the build's summary (:func:`~riskstrata.services.factors.publish`) with ``version``,
    ``previous`` and ``new_dates``; with no new day, ``version`` None and nothing published.
    Raises ModelNotBuilt when the spec is not built, DataValidationError when only a rebuild is right.
    """
    from riskstrata.services.factors import (SPILL_PREFIX, _remove_stale_spills, load_factor_inputs, model_names,
                                             publish, validate_result)

    say = progress or (lambda _m: None)
    given = spec if isinstance(spec, ModelSpec) else None
    spec = spec.name if isinstance(spec, ModelSpec) else spec
    names = model_names(spec)
    previous = store.current_version(names["factors"])
    if previous is None:
        raise ModelNotBuilt(f"Model B ({spec}) is not built: run `riskstrata factors build --model {spec}`")
    meta = store.model_meta(names["factors"], previous)
    if "has_data" not in meta:
        raise _rebuild(spec, "the published version was built by an older riskstrata (it does not record "
                             "which descriptors had data); build once, then updates work")
    source = meta.get("source")
    model_spec = given or load_spec(source if source and Path(source).is_file() else spec)
    if model_spec.factors != meta.get("spec_factors"):
        raise _rebuild(spec, "the spec's factors are not the published version's")
    end = pd.Timestamp(meta["end"])
    say("loading panels")
    inputs = load_factor_inputs(store, meta["start"], None)
    dates = inputs.returns.index
    if not (dates > end).any():
        return {"model": spec, "version": None, "previous": previous, "new_dates": [],
                "message": f"Model B ({spec}) is up to date: no trading day after {end.date()}"}
    stored_fr = store.read_model(names["factor_returns"], version=meta["companions"]["factor_returns"])
    stored_fr = stored_fr.sort_values("date").reset_index(drop=True)
    old_dates = pd.DatetimeIndex(stored_fr["date"])
    T_old = len(old_dates)
    if not dates[:T_old].equals(old_dates) or dates[T_old - 1] != end:
        raise _rebuild(spec, "the trading days the model covers changed since it was built")
    if T_old < 2:
        raise _rebuild(spec, "the published model has fewer than two dates")
    coverage_lag = stored_fr[[f"coverage_{f}" for f in model_spec.factors]].to_numpy(dtype=float)
    source = _StoredBlocks(store, names["factors"], previous, meta, coverage_lag, T_old, spec)

    _remove_stale_spills()
    with tempfile.TemporaryDirectory(prefix=f"{SPILL_PREFIX}{os.getpid()}-") as spill:
        result = fit_factor_model(inputs, model_spec, progress=say, spill_dir=spill, block_source=source,
                                  eigen_biases=_stored_biases(store, names["factor_cov"], meta))
        del inputs
        _check_old_returns(result, stored_fr, T_old, spec)
        say("validation")
        validation = validate_result(result)
        if store.current_version(names["factors"]) != previous:
            raise StoreError(f"Model B ({spec}) was republished while this update ran: run `riskstrata update` again")
        say("writing")
        new_dates = [str(d.date()) for d in result.dates[T_old:]]
        out = publish(store, result, validation, {"updated_from": previous, "update": {"new_dates": new_dates}})
    return {**out, "previous": previous, "new_dates": new_dates,
            "message": f"Model B ({spec}): appended {len(new_dates)} trading day(s) {new_dates[0]} … "
                       f"{new_dates[-1]} as version {out['version']}"}


def _stored_biases(store: Store, model: str, meta: dict) -> tuple[list[str], dict[pd.Timestamp, np.ndarray]] | None:
    """(factors, date → eigen bias) of the published covariance's simulation dates (its factor
    set's size each), or None when the version does not store them (the update then simulates
    every date again: slower, the same numbers)."""
    cov = store.read_model(model, version=meta["companions"]["factor_cov"])
    cols = [c for c in cov.columns if c.startswith("eigen_bias_")]
    if not cols:
        return None
    values = cov[cols].to_numpy(dtype=float)
    ran = np.isfinite(values).any(axis=1)
    dates = pd.DatetimeIndex(cov["date"])
    return list(meta["factors"]), {dates[i]: values[i][np.isfinite(values[i])] for i in np.flatnonzero(ran)}


def _check_old_returns(result, stored_fr: pd.DataFrame, T_old: int, spec: str) -> None:
    """Every published date's factor returns must come out again from today's data (returns, caps,
    the estimation universe): otherwise prices or fundamentals changed under the published model."""
    fr = result.factor_returns.iloc[:T_old]
    stored = stored_fr.reindex(columns=list(fr.columns)).to_numpy(dtype=float)
    bad = _differs(fr.to_numpy(), stored)
    if bad.any():
        t, k = np.argwhere(bad)[0]
        raise _rebuild(spec, f"{int(bad.any(axis=1).sum())} published dates' factor returns come out differently "
                             f"from today's data (first: {fr.columns[k]} on {fr.index[t].date()}: prices, caps or "
                             "classifications changed since the build)")


class _StoredBlocks:
    """The build's ``block_source``: each date block's exposures from the published version for
    the old dates and from the descriptors for the rest (from the model's last date on, whose
    stored exposures are the check), then the block's regression exactly as a build runs it."""

    def __init__(self, store: Store, model: str, version: str, meta: dict, coverage_lag: np.ndarray,
                 T_old: int, spec: str) -> None:
        self.store, self.model, self.version, self.meta = store, model, version, meta
        self.coverage_lag = coverage_lag  # (T_old, K) row t: coverage of t − 1
        self.T_old, self.spec = T_old, spec
        self.has_data = {d: bool(v) for d, v in meta["has_data"].items()}

    def stored(self, mf: ModelFrame, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(b − a, N, K) published exposures of dates a … b − 1 over the design (NaN where not
        published: a style the build never estimated), and the imputed flag on every factor."""
        dates, tickers, design = mf.dates, mf.tickers, mf.design
        B, N, K = b - a, len(tickers), len(design)
        x, imputed = np.full((B, N, K), np.nan), np.zeros((B, N, K), dtype=bool)
        published = [f for f in design if f in self.meta["factors"]]
        rows = self.store.read_model(self.model, version=self.version,
                                     columns=["date", "security_id", *published, "imputed"],
                                     where="date >= ? AND date <= ?",
                                     params=[dates[a].to_pydatetime(), dates[b - 1].to_pydatetime()])
        t = dates.get_indexer(pd.DatetimeIndex(rows["date"])) - a
        j = tickers.get_indexer(rows["security_id"].astype(str))
        if (j < 0).any() or (t < 0).any():
            raise _rebuild(self.spec, "securities or dates of the published exposures are no longer in the "
                                      "store's panels")
        cols = [design.index(f) for f in published]
        x[t[:, None], j[:, None], np.asarray(cols)[None, :]] = rows[published].to_numpy(dtype=float)
        imputed[t, j, :] = rows["imputed"].to_numpy(dtype=bool)[:, None]
        return x, imputed

    def __call__(self, mf: ModelFrame, bounds: list[tuple[int, int]]) -> Iterator[FactorBlock]:
        c = self.T_old - 1  # the model's last date: recomputed, and checked against the published row
        N, K = len(mf.tickers), len(mf.design)
        carry: BlockCarry | None = None
        for a, b in bounds:
            B = b - a
            x_ext = np.full((B + 1, N, K), np.nan)
            imputed = np.zeros((B, N, K), dtype=bool)
            coverage = np.full((B, K), np.nan)
            has: dict[str, bool] = {}
            old_hi = min(b, c)
            if old_hi > a:
                x, imp = self.stored(mf, a, old_hi)
                x_ext[1:1 + old_hi - a], imputed[:old_hi - a] = x, imp
                coverage[:old_hi - a] = self.coverage_lag[a + 1:old_hi + 1]
                has = dict(self.has_data)
            s = max(a, c)
            if b > s:
                xe, imp, cov, seen = block_exposures(mf, s, b)
                x_ext[1 + s - a:], imputed[s - a:], coverage[s - a:] = xe[1:], imp, cov
                for d, v in seen.items():
                    has[d] = has.get(d, False) or v
                if s == c:
                    self._check_last(mf, xe[1])
            blk = finish_block(mf, a, b, (x_ext, imputed, coverage, has), carry)
            carry = blk.carry
            yield blk

    def _check_last(self, mf: ModelFrame, fresh: np.ndarray) -> None:
        """The model's last date's exposures from today's panels must be the published ones."""
        c = self.T_old - 1
        published, _ = self.stored(mf, c, c + 1)
        keep = [k for k, f in enumerate(mf.design) if f in self.meta["factors"]]
        bad = _differs(fresh[:, keep], published[0][:, keep])
        if bad.any():
            j, k = np.argwhere(bad)[0]
            raise _rebuild(self.spec, f"{int(bad.any(axis=1).sum())} names' exposures on the model's last date "
                                      f"{mf.dates[c].date()} come out differently from today's data (first: "
                                      f"{mf.tickers[j]} {mf.design[keep[k]]}: fundamentals or prices changed "
                                      "inside the lookback since the build)")
