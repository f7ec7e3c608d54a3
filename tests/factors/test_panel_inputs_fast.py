"""The panels' inputs computed the fast way equal their definitions: snapshot fields derived in
numpy (the pandas formulas they replace, bit for bit), a window's row columns found once for
many fields, snapshots in force on the names they hold, a master's issuers looked up once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrata.data import fundamentals as FU
from riskstrata.data.master import SecurityMaster


def derived_by_pandas(long: pd.DataFrame, field: str, derive: bool) -> pd.Series:
    """The snapshot identity as the pandas formulas state it (the definition)."""
    values = long[field].astype("float64") if field in long else pd.Series(np.nan, index=long.index)
    if derive and field in FU._DERIVED:
        num, den, op = FU._DERIVED[field]
        if num in long and den in long:
            a, b = long[num].astype("float64"), long[den].astype("float64")
            with np.errstate(divide="ignore", invalid="ignore"):
                implied = a * b if op == "mul" else a / b.where(b != 0)
            values = values.fillna(implied.where(np.isfinite(implied)))
    return values


def ratio_by_pandas(long: pd.DataFrame, name: str, derive: bool) -> pd.Series:
    out = pd.Series(np.nan, index=long.index)
    for num, den in FU.SNAPSHOT_RATIOS[name]:
        if den not in long and not (derive and den in FU._DERIVED):
            continue
        b = derived_by_pandas(long, den, derive)
        a = pd.Series(1.0, index=long.index) if num is None else derived_by_pandas(long, num, derive)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = a / b.where(b != 0)
        out = out.fillna(r.where(np.isfinite(r)))
    return out


def snapshot_rows(n: int = 400, seed: int = 2) -> pd.DataFrame:
    """Snapshot rows with every kind of gap: NaN, zeros (a ratio's denominator), huge and tiny values."""
    rng = np.random.default_rng(seed)
    cols = {f: rng.lognormal(3, 2, n) * rng.choice([1.0, -1.0], n, p=[0.9, 0.1]) for f in FU.FIELDS}
    frame = pd.DataFrame(cols)
    for f in FU.FIELDS:
        frame.loc[rng.random(n) < 0.3, f] = np.nan
        frame.loc[rng.random(n) < 0.05, f] = 0.0
    frame.loc[rng.random(n) < 0.02, "price"] = 1e-300   # a quotient overflows to inf: not a value
    return frame


def bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def test_derived_fields_and_snapshot_ratios_equal_the_pandas_formulas_bit_for_bit():
    long = snapshot_rows()
    for derive in (True, False):
        for field in FU.FIELDS:
            assert bits(FU._with_derived(long, field, derive), derived_by_pandas(long, field, derive).to_numpy()), field
        for name in FU.SNAPSHOT_RATIOS:
            assert bits(FU._snapshot_ratio(long, name, derive), ratio_by_pandas(long, name, derive).to_numpy()), name
    lacking = long.drop(columns=["pe", "price_to_book", "shares_outstanding"])
    for field in ("eps", "book_value_per_share", "shares_outstanding", "market_cap"):
        assert bits(FU._with_derived(lacking, field, True), derived_by_pandas(lacking, field, True).to_numpy()), field
    for name in FU.SNAPSHOT_RATIOS:
        assert bits(FU._snapshot_ratio(lacking, name, True), ratio_by_pandas(lacking, name, True).to_numpy()), name


def stored_source() -> FU.StoredFundamentals:
    master = SecurityMaster(pd.DataFrame({"ticker": ["AAA", "BBB", "CCC"], "valid_from": pd.Timestamp("2000-01-01"),
                                          "asset_type": "stock"}))
    ids = master.records["security_id"].tolist()
    days = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-03", "2024-01-05", "2024-01-08"])
    table = pd.DataFrame({"security_id": [ids[0], ids[1], ids[2], ids[0], ids[1]], "ticker": "X",
                          "available_date": days, "market_cap": [1e9, 2e9, 3e9, 4e9, 5e9]})
    return FU.StoredFundamentals(master, table)


def test_a_windows_row_columns_are_found_once_and_again_for_other_names():
    source = stored_source()
    ids = pd.Index(source.master.records["security_id"].tolist())
    lo, hi = pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-08")
    _, keys, _ = source.window(lo, hi)
    for names in (ids, ids[::-1], ids[:2], ids):
        assert np.array_equal(source.window_columns(lo, hi, names),
                              names.get_indexer(pd.Index(keys["security_id"], dtype=object)))


def test_snapshots_in_force_on_the_names_they_hold_are_themselves():
    names = pd.Index(["S1", "S2", "S3"])
    held = FU.SnapshotsInForce(pd.Timestamp("2024-01-05"), names, np.array([1.0, np.nan, 3.0]),
                               np.array([19700.0, np.nan, 19710.0]), np.array([19699.0, np.nan, 19709.0]))
    same = held.on(pd.Index(["S1", "S2", "S3"]))
    assert bits(same.value, held.value) and bits(same.available, held.available) and same.names.equals(names)
    other = held.on(pd.Index(["S3", "S9"]))
    assert bits(other.value, [3.0, np.nan]) and bits(other.price_day, [19709.0, np.nan])


def test_a_masters_issuers_are_its_latest_records_and_a_new_master_has_its_own():
    records = pd.DataFrame({"ticker": ["GOOGL", "GOOG", "XYZ"], "valid_from": pd.Timestamp("2010-01-01"),
                            "asset_type": "stock"})
    master = SecurityMaster(records)
    ids = master.records.set_index("ticker")["security_id"]
    first = master.issuers([ids["GOOGL"], ids["GOOG"], "UNKNOWN"])
    assert first.tolist() == [ids["GOOGL"], ids["GOOG"], "UNKNOWN"]  # no issuer yet: its own
    mapped, _ = master.with_issuers(pd.DataFrame({"ticker": ["GOOGL", "GOOG"], "issuer_id": ["ALPHABET"] * 2}))
    assert mapped.issuers([ids["GOOGL"], ids["GOOG"], ids["XYZ"]]).tolist() == ["ALPHABET", "ALPHABET", ids["XYZ"]]
    assert master.issuers([ids["GOOGL"]]).tolist() == [ids["GOOGL"]]  # the first master is unchanged


def test_a_masters_latest_values_are_its_latest_records_and_stay_as_they_are():
    records = pd.DataFrame({"ticker": ["FB", "META", "XYZ"], "valid_from": pd.to_datetime(["2012-05-18", "2022-06-09",
                                                                                            "2015-01-01"]),
                            "valid_to": pd.to_datetime(["2022-06-08", None, None]), "asset_type": "stock",
                            "security_id": ["S-META", "S-META", "S-XYZ"]})
    master = SecurityMaster(records)
    latest = master.latest("ticker")
    assert latest.to_dict() == {"S-META": "META", "S-XYZ": "XYZ"}
    latest.iloc[0] = "changed"  # a caller's copy: the master's lookup is not touched
    assert master.latest("ticker").to_dict() == {"S-META": "META", "S-XYZ": "XYZ"}


def test_a_close_history_is_the_pandas_forward_fill_of_its_closes_and_their_days():
    rng = np.random.default_rng(6)
    for T, N in ((300, 40), (1, 3), (0, 4), (6, 0)):
        x = rng.lognormal(0, 1, (T, N))
        for value, share in ((np.nan, 0.3), (-1.0, 0.05), (np.inf, 0.03), (-np.inf, 0.02), (0.0, 0.02)):
            x[rng.random(x.shape) < share] = value
        if T > 40 and N > 4:
            x[:40, 3] = np.nan   # listed late
            x[:, 4] = np.nan     # never a close
        closes = pd.DataFrame(x, index=pd.bdate_range("2020-01-01", periods=T)[rng.permutation(T)],
                              columns=[f"S{i}" for i in range(N)])
        history = FU.CloseHistory.of(closes)
        a = closes.sort_index().to_numpy(dtype="float64", copy=True)
        a[~(a > 0)] = np.nan
        days = pd.DatetimeIndex(closes.sort_index().index).to_numpy("datetime64[D]").astype("float64")
        assert bits(history.filled, pd.DataFrame(a).ffill().to_numpy()), (T, N)
        seen_day = np.where(np.isfinite(a), days[:, None], np.nan)
        assert bits(history.filled_day, pd.DataFrame(seen_day).ffill().to_numpy())
        assert bits(history.frame.to_numpy(), a) and bits(history.days, days)


def test_panels_by_security_id_read_no_ticker():
    """The update's fundamentals are read without their tickers (a third of the read): the
    panels by security id are the same; a panel that would list the tickers says what is missing."""
    import pytest

    from riskstrata.errors import DataValidationError

    source = stored_source()
    ids = list(source.master.records["security_id"])
    days = pd.bdate_range("2024-01-01", periods=8)
    lean = FU.StoredFundamentals(source.master, source.table.drop(columns=["ticker"]))
    for field in ("market_cap", "shares_outstanding", "price"):
        assert bits(FU.fundamentals_panel(lean, field, days, ids).to_numpy(),
                    FU.fundamentals_panel(source, field, days, ids).to_numpy()), field
    with pytest.raises(DataValidationError, match="tickers"):
        FU.fundamentals_panel(lean, "market_cap", days)
