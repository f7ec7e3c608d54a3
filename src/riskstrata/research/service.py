"""The L* study over a built cascade: from a :class:`CascadeResult` or the store's current model.

Reads the cascade's existing time-safe residuals, ERs and hedge ratios (nothing is refitted),
picks the universe, and hands a :class:`StudyPanel` to the pure engine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError, InsufficientHistory, ModelNotBuilt, UnknownTicker
from riskstrata.research.lstar_study import (DEFAULT_HORIZONS, DEFAULT_THETAS, PANEL_FIELDS, LStarStudy,
                                             StudyPanel, lstar_study, stratified_sample)

DEFAULT_SAMPLE = 275
MIN_STUDY_DAYS = 252  # a name needs a year of residuals at every level to be eligible


def choose_universe(sectors: pd.Series, valid_days: pd.Series, universe: str | list[str] | None,
                    n: int = DEFAULT_SAMPLE, seed: int = 0) -> pd.Index:
    """The tickers studied. universe: None or 'sample' (stratified seeded sample of ``n`` eligible
    names), 'all' (every eligible name), or a list of tickers (each must be in the model).

    sectors: ticker → sector label; valid_days: ticker → stock-days with residuals at every level.
    """
    eligible = sectors[sectors.notna() & (valid_days.reindex(sectors.index).fillna(0) >= MIN_STUDY_DAYS)]
    if isinstance(universe, (list, tuple)):
        wanted = [str(t).upper() for t in universe]
        unknown = [t for t in wanted if t not in sectors.index]
        if unknown:
            raise UnknownTicker(", ".join(unknown[:10]), "not in the built cascade")
        return pd.Index(sorted(set(wanted)))
    if universe in (None, "sample"):
        return stratified_sample(eligible, n, seed)
    if universe == "all":
        return pd.Index(sorted(eligible.index))
    raise DataValidationError(f"universe must be 'sample', 'all' or a list of tickers, got {universe!r}")


def factor_returns(etf_returns: pd.DataFrame, dates: pd.DatetimeIndex, market_etf: str, sec_names: np.ndarray,
                   sub_names: np.ndarray) -> dict[str, np.ndarray]:
    """(T, n) raw returns of each stock's market / sector / subsector ETF on each day.

    sec_names, sub_names: (T, n) ETF tickers used that day (None where the level fell back, then 0).
    """
    etf = etf_returns.reindex(dates)
    values = np.nan_to_num(etf.to_numpy(dtype=np.float64))
    column = {str(c): i for i, c in enumerate(etf.columns)}
    if market_etf not in column:
        raise DataValidationError(f"no returns for the market ETF {market_etf}")
    out = {"mkt_ret": np.repeat(values[:, [column[market_etf]]], sec_names.shape[1], axis=1)}
    rows = np.arange(len(dates))[:, None]
    for key, names in (("sec_ret", sec_names), ("sub_ret", sub_names)):
        labels, inverse = np.unique(np.where(pd.isna(names), "", names).astype(str), return_inverse=True)
        table = np.array([column.get(x, -1) for x in labels], dtype=np.int64)
        idx = table[inverse.reshape(names.shape)]
        out[key] = np.where(idx >= 0, values[rows, np.maximum(idx, 0)], 0.0)
    return out


def panel_from_result(result, sectors: pd.Series, universe: str | list[str] | None = None, *,
                      n: int = DEFAULT_SAMPLE, seed: int = 0, start: object | None = None,
                      end: object | None = None, etf_returns: pd.DataFrame | None = None) -> StudyPanel:
    """A study panel from a fitted :class:`~riskstrata.cascade.result.CascadeResult`.

    sectors: ticker → sector label (e.g. GICS sector); tickers without one are left out.
    etf_returns: the ETF returns the cascade was fitted on; with them the panel also carries each
    stock's factor returns, so that hedges held over the horizon are scored too.
    """
    rows = _date_rows(result.dates, start, end)
    valid = np.isfinite(result.values["l3_rr"][rows]) & np.isfinite(result.values["l1_rr"][rows])
    valid_days = pd.Series(valid.sum(axis=0), index=result.tickers.astype(str))
    sec = pd.Series(sectors).rename(index=str).reindex(result.tickers.astype(str))
    tickers = choose_universe(sec, valid_days, universe, n, seed)
    cols = result.tickers.astype(str).get_indexer(tickers)
    values = {f: np.asarray(result.values[f])[rows][:, cols] for f in PANEL_FIELDS}
    if etf_returns is not None:
        from riskstrata.cascade.result import etf_used

        sec_etf, sub_etf = etf_used(result.pairs, result.codes[rows][:, cols], result.values["flags"][rows][:, cols])
        values.update(factor_returns(etf_returns, result.dates[rows], result.params["market_etf"], sec_etf, sub_etf))
    return StudyPanel(result.dates[rows], tickers, sec.loc[tickers].to_numpy(dtype=object), values)


def _date_rows(dates: pd.DatetimeIndex, start: object | None, end: object | None) -> np.ndarray:
    rows = np.ones(len(dates), dtype=bool)
    if start is not None:
        rows &= dates >= pd.Timestamp(start)
    if end is not None:
        rows &= dates <= pd.Timestamp(end)
    if not rows.any():
        raise InsufficientHistory(f"no model dates between {start} and {end}")
    return rows


def sector_names(sector_etfs: pd.Series) -> pd.Series:
    """Sector ETF (e.g. XLK) → GICS sector name via the ETF registry (unknown ETFs keep their ticker)."""
    from riskstrata.data.registry import EtfRegistry

    tab = EtfRegistry.default().table
    names = dict(zip(tab.loc[tab["level"] == "sector", "etf"], tab.loc[tab["level"] == "sector", "gics_sector"]))
    return sector_etfs.map(lambda e: names.get(e, e) if isinstance(e, str) else None)


def panel_from_store(store, universe: str | list[str] | None = None, *, n: int = DEFAULT_SAMPLE, seed: int = 0,
                     start: object | None = None, end: object | None = None) -> StudyPanel:
    """A study panel from the store's current cascade model (stocks only: rows whose ticker is an
    ETF of the registry are left out). A stock's sector is the sector ETF it was hedged with most."""
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import date_range_clause
    from riskstrata.services.cascade import MODEL

    if store.current_version(MODEL) is None:
        raise ModelNotBuilt("no cascade model in the store: run `riskstrata build cascade` first")
    where, params = date_range_clause(start, end)
    meta_cols = ["date", "security_id", "ticker", "sector_etf", "subsector_etf"]
    rows = store.read_model(MODEL, columns=meta_cols + list(PANEL_FIELDS), where=" AND ".join(where) or None,
                            params=params or None)
    if rows.empty:
        raise InsufficientHistory(f"no cascade rows between {start} and {end}")
    etfs = EtfRegistry.default().known_etfs()
    rows = rows[~rows["ticker"].astype(str).isin(etfs)]
    # One label per security: the ticker it traded under last.
    last = rows.sort_values("date").groupby("security_id", observed=True).last()
    label = last["ticker"].astype(str)
    main_sector = rows.dropna(subset=["sector_etf"]).groupby("security_id", observed=True)["sector_etf"] \
        .agg(lambda s: s.value_counts().index[0])
    sectors = sector_names(main_sector.astype(object)).reindex(last.index)
    valid = rows["l3_rr"].notna() & rows["l1_rr"].notna()
    valid_days = valid.groupby(rows["security_id"], observed=True).sum().reindex(last.index).fillna(0)
    by_ticker = pd.Series(sectors.to_numpy(), index=label.to_numpy())
    by_ticker = by_ticker[~by_ticker.index.duplicated(keep="last")]
    days_by_ticker = pd.Series(valid_days.to_numpy(), index=label.to_numpy())
    days_by_ticker = days_by_ticker[~days_by_ticker.index.duplicated(keep="last")]
    tickers = choose_universe(by_ticker, days_by_ticker, universe, n, seed)
    sid_of = pd.Series(last.index.astype(str), index=label.to_numpy())
    sid_of = sid_of[~sid_of.index.duplicated(keep="last")]
    sids = sid_of.loc[tickers].to_numpy()
    sub = rows[rows["security_id"].astype(str).isin(set(sids))]
    dates = pd.DatetimeIndex(np.sort(rows["date"].unique()))
    t_idx = dates.get_indexer(sub["date"])
    n_idx = pd.Index(sids).get_indexer(sub["security_id"].astype(str))
    values = {}
    for f in PANEL_FIELDS:
        arr = np.full((len(dates), len(sids)), np.nan)
        arr[t_idx, n_idx] = sub[f].to_numpy(dtype=np.float64, na_value=np.nan)
        values[f] = arr
    names = {}
    for col in ("sector_etf", "subsector_etf"):
        arr = np.full((len(dates), len(sids)), None, dtype=object)
        arr[t_idx, n_idx] = sub[col].astype(object).to_numpy()
        names[col] = arr
    market = store.model_meta(MODEL).get("params", {}).get("market_etf", "SPY")
    values.update(factor_returns(_store_etf_returns(store, dates), dates, market, names["sector_etf"],
                                 names["subsector_etf"]))
    return StudyPanel(dates, tickers, by_ticker.loc[tickers].to_numpy(dtype=object), values)


def _store_etf_returns(store, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """(dates × ETF ticker) returns of the registry's ETFs, from the store's prices."""
    from riskstrata.data.ingest import load_returns
    from riskstrata.data.master import SecurityMaster
    from riskstrata.data.registry import EtfRegistry

    ids = SecurityMaster.from_store(store).resolve_many(EtfRegistry.default().etfs(), dates[-1]).dropna()
    wide = load_returns(store, dates[0], dates[-1], security_ids=ids.to_numpy())
    ids = ids[ids.isin(wide.columns)]
    return wide[ids.to_numpy()].set_axis(ids.index.to_list(), axis=1)


def run_lstar_study(store=None, *, result=None, sectors: pd.Series | None = None,
                    etf_returns: pd.DataFrame | None = None,
                    universe: str | list[str] | None = None, n: int = DEFAULT_SAMPLE, seed: int = 0,
                    start: object | None = None, end: object | None = None,
                    thetas: tuple[float, ...] = DEFAULT_THETAS, horizons: tuple[int, ...] = DEFAULT_HORIZONS,
                    cost_bps: float = 5.0, n_boot: int = 1000, block_days: int = 63) -> LStarStudy:
    """The L* study on the store's cascade, or on a fitted ``result`` with its ``sectors``.

    See :func:`riskstrata.research.lstar_study.lstar_study` for the metrics.
    """
    if result is not None:
        if sectors is None:
            raise DataValidationError("a CascadeResult needs sectors (ticker → sector label)")
        panel = panel_from_result(result, sectors, universe, n=n, seed=seed, start=start, end=end,
                                  etf_returns=etf_returns)
    elif store is not None:
        panel = panel_from_store(store, universe, n=n, seed=seed, start=start, end=end)
    else:
        raise DataValidationError("give a store or a fitted cascade result")
    study = lstar_study(panel, thetas=thetas, horizons=horizons, cost_bps=cost_bps, n_boot=n_boot,
                        block_days=block_days, seed=seed)
    study.params["universe"] = universe if isinstance(universe, str) or universe is None else "list"
    study.params["sample_size"] = n
    return study
