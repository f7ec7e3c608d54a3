"""Daily update of Model B (a factor-model spec): the store's new days, from the published state.

A published version keeps, beside its parts, the state its recursions reached on its last date
(:mod:`.factors_state`): the names' history counts, the specific-risk EWMA sums, the validation's
accumulators, the regression's notes, and what the update would otherwise read back from the
parts (the covariance's diagonals, eigen biases and λ, the last date's matrix and exposures);
and the fundamentals panels of its trailing rows with the snapshots in force on its last date.
Its factor returns keep, beside their parts, the history of the columns an update reads
(:func:`~riskstrata.services.factors_state.returns_arrays`: the factors' returns and coverage), so that no part is read back.
An update of B new days reads the trailing panels the new dates' descriptors need
(:func:`~riskstrata.factors.model.lookback_start`, one row more for the market return's lagged
caps), with the history before them from the counts — prices afresh, the fundamentals panels
from the kept rows plus the new days' rows (:func:`~riskstrata.services.factors.extend_point_in_time_panels`:
the same panels bit for bit; a name whose adjusted closes were re-based is recomputed) — and computes

- the exposures of the model's last date (checked against the published row) and the new dates,
- the new dates' regressions (the last date's exposures explain the first new date),
- the specific risk by its recursions (:func:`~riskstrata.factors.specific.advance_specific_risk`),
- the factor covariance of the new rows only (:func:`~riskstrata.factors.covariance.extend_factor_covariance`,
  from the stored factor returns, covariances, eigen biases and λ),
- the validation from its accumulators (:func:`~riskstrata.factors.validation.advance_validation`),
- the factor status over the whole history (stored coverage and factor returns, the new rows),

by the same functions a build runs, so it equals a full rebuild of the same data up to rounding
(the tests hold every stored field to 1e-10). It publishes a new version of every part, the
exposures model last, like a build: the old rows' part files are hard-linked into it (published
parts are never modified), the new rows go in one new part, and readers never see a mix. Its
dozen reads share one DuckDB connection (:meth:`~riskstrata.data.store.Store.one_connection`).

It refuses (DataValidationError, naming ``riskstrata factors build --model SPEC``) what it cannot
make equal to a rebuild: a version built before versions kept what an update needs, another
spec than the version's, and data changed under the published numbers — the fingerprint of
every input row through the model's last date (:func:`~riskstrata.services.factors_state.input_digest`:
prices, fundamentals, classifications, the model's securities) must be the build's, and the
model's last date's exposures recomputed from today's panels must be the published ones.

Two cases take the long way, recomputing the whole history with old dates' exposures read from
the published version (the same numbers, at about a rebuild's cost): ``inv_specific_var``
regression weights (each date's weights come from a specific risk that the regression's own
residuals feed back into: the build regresses every date twice), and a new date that changes what
every old date's numbers depend on — a style entering the design (its coverage reaches the
threshold for the first time) or a column turning into a style for the validation's VIF.
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
from riskstrata.factors.covariance import FactorCovariance, extend_factor_covariance
from riskstrata.factors.exposures import lag_one_day
from riskstrata.factors.model import (BlockCarry, FactorBlock, ModelFrame, Progress, block_exposures,
                                      covariance_params, finish_block, fit_factor_model, history_before,
                                      one_blas_thread,
                                      history_counts, kept_columns, lookback_start, model_status, prepare_model,
                                      specific_params, status_notes)
from riskstrata.factors.regression import RegressionResult
from riskstrata.factors.spec import ModelSpec, load_spec
from riskstrata.factors.specific import advance_specific_risk
from riskstrata.factors.validation import StaleValidationState, advance_validation
from riskstrata.services.factors_state import (PANELS_ARRAYS, RETURNS_ARRAYS, STATE_ARRAYS, NewRows, PublishedTail,
                                               UpdateState, extended_digest, input_digest_and_new_rows,
                                               read_trailing_panels, read_update_state, returns_arrays)

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
    ``previous``, ``new_dates`` and ``path`` ("state": from the published state; "recomputed":
    the whole history again, see the module docstring); with no new day, ``version`` None and
    nothing published. Raises ModelNotBuilt when the spec is not built, DataValidationError when
    only a rebuild is right.
    """
    from riskstrata.services.factors import model_names

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
    with store.one_connection():  # the update's dozen reads on one connection
        say("reading the version")
        new_dates = _trading_days_after(store, end)
        if not len(new_dates):
            return {"model": spec, "version": None, "previous": previous, "new_dates": [],
                    "message": f"Model B ({spec}) is up to date: no trading day after {end.date()}"}
        stored_fr, fr_columns = _stored_returns(store, names, meta, model_spec.factors)
        old_dates = pd.DatetimeIndex(stored_fr["date"])
        if len(old_dates) < 2 or old_dates[-1] != end:
            raise _rebuild(spec, "the published model has fewer than two dates")
        state = read_update_state(store, names["factors"], previous)
        new_sums = None
        if state is not None and "input_digest" in meta:
            say("checking inputs")
            new_sums = _check_digest(store, meta, end, new_dates[-1], state.history.names, spec)
        out = None
        if state is not None and model_spec.regression.get("weights", "sqrt_cap") != "inv_specific_var":
            # One BLAS thread: every product of a day is small (K × T by T × K, K × N), and a BLAS
            # that wakes a thread per product waits on a busy core (measured 0.1 s per Gram matrix
            # under load, 0.2 ms on one thread).
            with one_blas_thread():
                out = _advance(store, model_spec, names, previous, meta, stored_fr, fr_columns, new_dates, state,
                               new_sums, say)
        if out is None:  # the long way (module docstring)
            out = _recompute(store, model_spec, names, previous, meta, stored_fr, say)
    new = out["new_dates"]
    return {**out, "previous": previous,
            "message": f"Model B ({spec}): appended {len(new)} trading day(s) {new[0]} … {new[-1]} as version "
                       f"{out['version']}"}


def _stored_returns(store: Store, names: dict, meta: dict, spec_factors: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """(the published factor returns in date order, the table's columns): from the arrays the
    version keeps beside its parts (:func:`returns_arrays`: ``date``, the published factors and
    the coverage columns only), else read from the parts (every column)."""
    model, version = names["factor_returns"], meta["companions"]["factor_returns"]
    kept = store.read_arrays(model, RETURNS_ARRAYS, version)
    want = [*meta["factors"], *(f"coverage_{f}" for f in spec_factors)]
    if kept is not None and [str(c) for c in kept["kept"]] == want:
        frame = pd.DataFrame(kept["values"], columns=want)
        frame.insert(0, "date", pd.DatetimeIndex(kept["dates"], name="date"))
        return frame, [str(c) for c in kept["columns"]]
    frame = store.read_model(model, version=version).sort_values("date").reset_index(drop=True)
    return frame, list(frame.columns)


def _trading_days_after(store: Store, end: pd.Timestamp) -> pd.DatetimeIndex:
    """The store's priced dates after ``end`` (the dates a build's panels would add): from the
    per-date row sums the prices table keeps in its footer (its distinct dates, no row read),
    else by a query."""
    sums = store.table_row_sums("prices")
    if sums is not None and sums.date == "date":
        return pd.DatetimeIndex(sums.days[sums.days > end.value].astype("datetime64[ns]"), name="date")
    days = store.query("SELECT DISTINCT date FROM prices WHERE date > ? ORDER BY date", [end.to_pydatetime()],
                       models=False)
    return pd.DatetimeIndex(days["date"])


def _check_digest(store: Store, meta: dict, end: pd.Timestamp, new_end: pd.Timestamp, names: pd.Index,
                  spec: str) -> NewRows:
    """Every input row through ``end`` must be the build's (module docstring). Returns the sums
    of the rows after it through ``new_end``, hashed by the same read, for the new version's
    fingerprint (:func:`~riskstrata.services.factors_state.extended_digest`)."""
    now, new_rows = input_digest_and_new_rows(store, end, new_end, names)
    changed = [t for t, v in meta["input_digest"].items() if now.get(t) != v]
    if changed:
        raise _rebuild(spec, f"the {', '.join(changed)} data through the model's last date {end.date()} changed "
                             "since it was built (a correction or a backfill under the published numbers)")
    return new_rows


def _advance(store: Store, spec: ModelSpec, names: dict, previous: str, meta: dict, stored_fr: pd.DataFrame,
             fr_columns: list[str], new_dates: pd.DatetimeIndex, state: UpdateState, new_sums: NewRows | None,
             say: Progress) -> dict | None:
    """The update from the published state (module docstring); None when it must take the long way.
    stored_fr, fr_columns: :func:`_stored_returns`."""
    from riskstrata.services.factors import (covariance_rows, exposure_rows, factor_return_rows,
                                             load_factor_inputs_kept, publish_summary, security_labels,
                                             specific_risk_rows, validation_table, version_meta)

    old_dates = pd.DatetimeIndex(stored_fr["date"])
    T_old, c = len(old_dates), len(old_dates) - 1
    dates = old_dates.append(new_dates)
    # The trailing rows the last date's descriptors read, and one more: the market return of a
    # row needs the caps of the row before.
    w = max(0, lookback_start(dates, c) - 1)
    say("loading panels")
    # The fundamentals panels the version kept stand for its rows when the fingerprint vouched
    # for the fundamentals under them (new_sums: it was checked); today's closes are compared.
    known = read_trailing_panels(store, names["factors"], previous) if new_sums is not None else None
    inputs, kept = load_factor_inputs_kept(store, dates[w], None, also=list(state.history.names), known=known)
    tickers = inputs.returns.columns
    if not inputs.returns.index.equals(dates[w:]):
        raise _rebuild(spec.name, "the store's trading days inside the model changed since it was built")
    before = history_before(inputs, spec, state.history, c - w)
    mf = prepare_model(inputs, spec, before)
    del inputs
    say("exposures")
    cw, Tw = c - w, len(dates) - w
    x_ext, imputed, coverage, has_new = block_exposures(mf, cw, Tw)   # rows c … T − 1 (row 0: unused)
    # What the version published that the update reads again, kept beside it (else read from the parts).
    tail = state.published if state.published is not None and len(state.published.vra_lambda) == T_old \
        and state.published.factors == list(meta["factors"]) else None
    _check_last(store, names["factors"], previous, meta, mf, cw, x_ext[1], spec.name, tail)
    # Unlagged coverage of every date: the stored rows are lagged (row t: coverage of t − 1).
    coverage_cols = [f"coverage_{f}" for f in spec.factors]
    coverage_all = np.vstack([stored_fr[coverage_cols].to_numpy(dtype=float)[1:], coverage])
    cols = kept_columns(spec, coverage_all)
    factors = [spec.factors[k] for k in cols]
    if factors != list(meta["factors"]):
        return None  # a style enters the design: every date's regression changes
    say("regression")
    made = (x_ext[1:], imputed[1:], coverage[1:], has_new)
    blk = finish_block(mf, cw + 1, Tw, made, BlockCarry(x_ext[1].copy(), coverage[0].copy()))
    reg = _kept(blk.regression, cols, factors)
    caps_new = mf.inp.market_cap.iloc[cw + 1:]
    say("specific risk")
    spec_var, spec_state = advance_specific_risk(
        state.specific, pd.DataFrame(blk.specific, index=new_dates, columns=tickers), caps_new, specific_params(spec))
    say("factor covariance")
    fr_all = pd.concat([stored_fr.set_index("date")[factors], reg.factor_returns])
    fr_all.index = dates
    before_cov = (tail.covariance(old_dates) if tail is not None
                  else _stored_covariance(store, names, meta, factors, T_old))
    cov = extend_factor_covariance(fr_all, before_cov, covariance_params(spec),
                                   groups=[meta["groups"][f] for f in factors])
    say("validation")
    x_new = blk.exposures[:, :, cols]
    try:
        reports, val_state = advance_validation(
            state.validation, reg.factor_returns, {"eigen on": cov.adjusted[1:], "eigen off": cov.raw[1:]},
            reg.specific_returns, spec_var, x_new, caps_new, r2_new=reg.r2)
    except StaleValidationState:
        return None  # a column turns into a style for the VIF: every past month end's VIF changes
    coverage_lag = pd.DataFrame(lag_one_day(coverage_all), index=dates, columns=spec.factors)
    has_data = {d: bool(meta["has_data"].get(d, False) or has_new.get(d, False))
                for d in sorted(set(meta["has_data"]) | set(has_new))}
    notes_by_date = {**state.regression_notes, **reg.notes}
    status = model_status(spec, fr_all, coverage_lag, has_data, notes_by_date)
    notes = list(mf.notes) + status_notes(status)

    say("writing")
    if store.current_version(names["factors"]) != previous:
        raise StoreError(f"Model B ({spec.name}) was republished while this update ran: run `riskstrata update` again")
    label = security_labels(store, tickers)
    vmeta = version_meta(spec, factors, dates, notes, status, has_data)
    versions = {}
    with store.begin_version(names["factor_validation"]) as wr:
        wr.write_part(validation_table(reports))
        versions["factor_validation"] = wr.commit(vmeta, prune=False)
    new_returns = factor_return_rows(reg, coverage_lag.iloc[T_old:])[fr_columns]
    read_back = ["date", *factors, *coverage_cols]  # what the next update reads of the factor returns
    history = pd.concat([stored_fr[read_back], new_returns[read_back]], ignore_index=True)
    for part, rows in (("factor_returns", new_returns), ("factor_cov", covariance_rows(_rows_after_first(cov))),
                       ("specific_risk", specific_risk_rows(spec_var, label))):
        with store.begin_version(names[part]) as wr:
            _carry_parts(store, wr, names[part], meta["companions"][part], rows)
            if part == "factor_returns":
                wr.write_arrays(RETURNS_ARRAYS, returns_arrays(history, factors, spec.factors, fr_columns))
            versions[part] = wr.commit(vmeta, prune=False)  # pruned once, after the last
    new_list = [str(d.date()) for d in new_dates]
    with store.begin_version(names["factors"]) as wr:
        _carry_parts(store, wr, names["factors"], previous,
                     exposure_rows(new_dates, tickers, label, factors, x_new, blk.imputed[:, :, cols]))
        # The old rows of what the next update reads again: the tail read with the state (the
        # same numbers), else from the covariance read from the parts.
        published = (tail if tail is not None
                     else PublishedTail.of(before_cov, pd.Index([]), np.empty((0, len(factors)))))
        if published is not None:
            published = published.extended(PublishedTail.of(_rows_after_first(cov), tickers, x_new[-1]))
        wr.write_arrays(STATE_ARRAYS, UpdateState(history_counts(mf, before), spec_state,
                                                  val_state, notes_by_date, published).to_arrays())
        if kept is not None:
            wr.write_arrays(PANELS_ARRAYS, kept.to_arrays())
        digest = extended_digest(store, meta["input_digest"], old_dates[-1], dates[-1], tickers, new_sums,
                                 state.history.names)
        version = wr.commit({**vmeta, "companions": versions, "input_digest": digest,
                             "updated_from": previous, "update": {"new_dates": new_list, "path": "state"}})
    return {**publish_summary(spec, version, factors, len(dates), len(tickers), notes, status),
            "new_dates": new_list, "path": "state"}


def _recompute(store: Store, model_spec: ModelSpec, names: dict, previous: str, meta: dict,
               stored_fr: pd.DataFrame, say: Progress) -> dict:
    """The long way: every date again, old dates' exposures from the published version."""
    from riskstrata.services.factors import (SPILL_PREFIX, _remove_stale_spills, load_factor_inputs_kept, publish,
                                             validate_result)

    spec = model_spec.name
    say("loading panels")
    inputs, kept = load_factor_inputs_kept(store, meta["start"], None)
    dates = inputs.returns.index
    old_dates = pd.DatetimeIndex(stored_fr["date"])
    T_old = len(old_dates)
    if not dates[:T_old].equals(old_dates):
        raise _rebuild(spec, "the trading days the model covers changed since it was built")
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
        out = publish(store, result, validation,
                      {"updated_from": previous, "update": {"new_dates": new_dates, "path": "recomputed"}}, kept)
    return {**out, "new_dates": new_dates, "path": "recomputed"}


def _kept(reg: RegressionResult, cols: np.ndarray, factors: list[str]) -> RegressionResult:
    """The regression's outputs on the kept design columns, as a build publishes them."""
    def pick(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(frame.to_numpy()[:, cols], index=frame.index, columns=factors)

    return RegressionResult(factors=factors, factor_returns=pick(reg.factor_returns), t_stats=pick(reg.t_stats),
                            r2=reg.r2, n_names=reg.n_names, condition_number=reg.condition_number,
                            constraint_residual=reg.constraint_residual, specific_returns=reg.specific_returns,
                            thin_industries=pick(reg.thin_industries), notes=reg.notes)


def _stored_covariance(store: Store, names: dict, meta: dict, factors: list[str], T_old: int) -> FactorCovariance:
    """The published covariance as much as :func:`extend_factor_covariance` reads of it: every
    date's variances (which factors had a forecast, the VRA's history), eigen biases where
    simulated and λ, and the last date's whole matrix (its consistency check). The other
    off-diagonal entries stay NaN: a tenth of the columns are read, not the whole table."""
    model, version = names["factor_cov"], meta["companions"]["factor_cov"]
    K = len(factors)
    diagonal = [f"{f}|{f}" for f in factors]
    bias_cols = [f"eigen_bias_{i}" for i in range(K)]
    cov = store.read_model(model, version=version, columns=["date", *diagonal, *bias_cols, "vra_lambda"])
    cov = cov.sort_values("date").reset_index(drop=True)
    if len(cov) != T_old:
        raise StoreError("the published covariance does not cover the model's dates")
    adjusted = np.full((T_old, K, K), np.nan)
    adjusted[:, np.arange(K), np.arange(K)] = cov[diagonal].to_numpy(dtype=float)
    last = store.read_model(model, version=version, columns=[f"{a}|{b}" for a in factors for b in factors],
                            where="date = ?", params=[pd.Timestamp(cov["date"].iloc[-1]).to_pydatetime()])
    adjusted[-1] = last.to_numpy(dtype=float).reshape(K, K)
    bias = cov[bias_cols].to_numpy(dtype=float)
    return FactorCovariance(dates=pd.DatetimeIndex(cov["date"]), factors=factors, raw=np.empty((0, K, K)),
                            adjusted=adjusted, eigen_applied=np.empty(0, bool),
                            vra_lambda=cov["vra_lambda"].to_numpy(dtype=float),
                            eigen_recomputed=np.isfinite(bias).any(axis=1), eigen_bias=bias)


def _rows_after_first(fc: FactorCovariance) -> FactorCovariance:
    """The extension's new rows (its first row is the model's last date, already published)."""
    return FactorCovariance(dates=fc.dates[1:], factors=fc.factors, raw=fc.raw[1:], adjusted=fc.adjusted[1:],
                            eigen_applied=fc.eigen_applied[1:], vra_lambda=fc.vra_lambda[1:],
                            eigen_recomputed=fc.eigen_recomputed[1:], eigen_bias=fc.eigen_bias[1:], params=fc.params)


DAILY = "-daily"      # the name suffix of the parts an update adds
COMPACT_AFTER = 20    # daily parts of a version merged into one part once there would be this many


def _carry_parts(store: Store, writer, model: str, version: str, rows: pd.DataFrame) -> None:
    """Hard-link a published version's parts into the build and add the new ``rows`` after them:
    as one more daily part, or — once COMPACT_AFTER daily parts would have gathered — merged with
    the daily parts into one part (reading only those: a few days' rows each), so a year of
    daily updates leaves a version of a few dozen parts, not hundreds. Parts stay in date order
    (names sort by their leading number)."""
    files = store.model_files(model, version)
    # The row counts the version's meta lists, so that no part's footer is read to count them.
    counted = {p.get("file"): p.get("rows") for p in store.model_meta(model, version).get("parts", [])}
    daily = [f for f in files if f.stem.endswith(DAILY)]
    number = max((int(f.stem[len("part-"):].split("-")[0]) for f in files), default=-1) + 1
    if len(daily) + 1 >= COMPACT_AFTER:
        for path in files:
            if path not in daily:
                writer.adopt_part(path, counted.get(path.name))
        merged = pd.concat([store.read_parts(daily), rows], ignore_index=True)
        writer.write_part(merged, f"{number:05d}")
        return
    for path in files:
        writer.adopt_part(path, counted.get(path.name))
    writer.write_part(rows, f"{number:05d}{DAILY}")


def _check_last(store: Store, model: str, version: str, meta: dict, mf: ModelFrame, row: int, fresh: np.ndarray,
                spec: str, tail: PublishedTail | None = None) -> None:
    """The model's last date's exposures from today's panels must be the published ones (from
    the version's ``tail`` when it keeps them, else read from its parts)."""
    published = [f for f in mf.design if f in meta["factors"]]
    day = mf.dates[row]
    if tail is not None and set(published) <= set(tail.factors):
        held = ~np.isnan(tail.last_exposures).all(axis=1)  # the names with a published row
        ids = tail.names[held]
        values = tail.last_exposures[held][:, [tail.factors.index(f) for f in published]]
    else:
        rows = store.read_model(model, version=version, columns=["security_id", *published], where="date = ?",
                                params=[day.to_pydatetime()])
        ids, values = rows["security_id"].astype(str), rows[published].to_numpy(dtype=float)
    stored = np.full((len(mf.tickers), len(published)), np.nan)
    j = mf.tickers.get_indexer(ids)
    if (j < 0).any():
        raise _rebuild(spec, "securities of the published exposures are no longer in the store's panels")
    stored[j] = values
    keep = [mf.design.index(f) for f in published]
    bad = _differs(fresh[:, keep], stored)
    if bad.any():
        jj, k = np.argwhere(bad)[0]
        raise _rebuild(spec, f"{int(bad.any(axis=1).sum())} names' exposures on the model's last date {day.date()} "
                             f"come out differently from today's data (first: {mf.tickers[jj]} {published[k]}: "
                             "fundamentals or prices changed inside the lookback since the build)")


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
                    _check_last(self.store, self.model, self.version, self.meta, mf, c, xe[1], self.spec)
            blk = finish_block(mf, a, b, (x_ext, imputed, coverage, has), carry)
            carry = blk.carry
            yield blk
