"""Look-through: hidden concentration, overlap with direct picks, unexpanded ETFs, residual; active share."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from riskstrata.data.etf_holdings import etf_holdings_as_of, read_etf_holdings_file
from riskstrata.errors import DataValidationError, UnknownTicker
from riskstrata.portfolio.lookthrough import LookThrough, active_share, benchmark_weights, look_through

REAL_HOLDINGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "reference" / "etf_holdings.parquet"

# Fund F lists two names covering 90% of it; G is an ETF with no holdings data.
F = pd.DataFrame({"etf": ["F", "F"], "holding": ["A", "B"], "weight": [0.6, 0.3]})


def holdings(rows: dict[str, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(etf, name, w) for etf, names in rows.items() for name, w in names.items()],
        columns=["etf", "holding", "weight"],
    )


def assert_weight_accounted(lt: LookThrough, weights: pd.Series) -> None:
    """Every unit of portfolio weight is a name (or an unexpanded ETF's line) or residual."""
    assert lt.exposures["combined_weight"].sum() + lt.residual_weight == pytest.approx(weights.sum(), abs=1e-12)


# ---------------------------------------------------------------------- hidden concentration


@pytest.mark.realdata
def test_spy_plus_apple_shows_apple_at_half_plus_half_its_spy_weight() -> None:
    if not REAL_HOLDINGS.is_file():
        pytest.skip(f"real ETF holdings not present at {REAL_HOLDINGS}")
    spy = etf_holdings_as_of(read_etf_holdings_file(REAL_HOLDINGS), ["SPY"], "2022-08-25")
    w_aapl_in_spy = float(spy.loc[spy["holding"] == "AAPL", "weight"].iloc[0])
    weights = pd.Series({"SPY": 0.5, "AAPL": 0.5})
    lt = look_through(weights, spy, {"SPY"})
    aapl = lt.exposures.loc["AAPL"]
    assert aapl["combined_weight"] == 0.5 + 0.5 * w_aapl_in_spy  # exactly
    assert (aapl["direct_weight"], aapl["via_etfs_weight"]) == (0.5, 0.5 * w_aapl_in_spy)
    assert lt.exposures.index[0] == "AAPL"
    assert aapl["sources"] == f"direct 50.0%; SPY {0.5 * w_aapl_in_spy:.1%}"
    assert lt.residual_weight == pytest.approx(0.5 * (1 - spy["weight"].sum()))
    assert lt.overlap.loc["SPY", "overlap_with_direct"] == pytest.approx(w_aapl_in_spy)  # direct = 100% AAPL
    assert_weight_accounted(lt, weights)


def test_a_name_held_directly_and_via_a_fund_adds_up_exactly() -> None:
    weights = pd.Series({"F": 0.4, "A": 0.2, "C": 0.4})
    lt = look_through(weights, F, {"F"})
    ex = lt.exposures
    assert ex.loc["A", "combined_weight"] == 0.2 + 0.4 * 0.6
    assert ex.loc["B", "combined_weight"] == 0.4 * 0.3
    assert ex.loc["A", "sources"] == "direct 20.0%; F 24.0%"
    assert ex.loc["B", ["direct_weight", "via_etfs_weight"]].tolist() == [0.0, 0.4 * 0.3]
    assert ex.index.tolist() == ["A", "C", "B"]  # by |combined| descending
    assert "F" not in ex.index  # an expanded fund is its holdings now
    assert_weight_accounted(lt, weights)


def test_two_funds_holding_the_same_name_are_listed_as_separate_sources() -> None:
    hold = holdings({"F": {"A": 0.5, "B": 0.5}, "H": {"A": 0.2, "D": 0.8}})
    lt = look_through(pd.Series({"F": 0.5, "H": 0.5}), hold, {"F", "H"})
    assert lt.exposures.loc["A", "combined_weight"] == pytest.approx(0.35)
    assert lt.exposures.loc["A", "sources"] == "F 25.0%; H 10.0%"


# ---------------------------------------------------------------------- overlap


def test_overlap_of_a_fund_with_the_direct_picks() -> None:
    # Direct picks A, B at 25% each → 50% each of the direct book; F holds A 60%, B 30%.
    lt = look_through(pd.Series({"F": 0.5, "A": 0.25, "B": 0.25}), F, {"F"})
    row = lt.overlap.loc["F"]
    assert row["fund_weight"] == 0.5
    assert row["coverage"] == pytest.approx(0.9)
    assert row["overlap_with_direct"] == pytest.approx(min(0.6, 0.5) + min(0.3, 0.5))
    assert row["names_in_common"] == 2


def test_a_fund_sharing_nothing_with_the_direct_picks_has_zero_overlap() -> None:
    lt = look_through(pd.Series({"F": 0.5, "Z": 0.5}), F, {"F"})
    assert lt.overlap.loc["F", ["overlap_with_direct", "names_in_common"]].tolist() == [0.0, 0]


# ---------------------------------------------------------------------- what cannot be seen through


def test_an_etf_without_holdings_data_is_reported_unexpanded_and_kept_as_a_line() -> None:
    weights = pd.Series({"F": 0.5, "G": 0.3, "A": 0.2})
    lt = look_through(weights, F, {"F", "G"})
    assert lt.unexpanded.to_dict("records") == [
        {"ticker": "G", "weight": 0.3, "reason": "no holdings data for this ETF"}
    ]
    assert lt.exposures.loc["G", "direct_weight"] == 0.3
    assert "not expanded" in lt.exposures.loc["G", "sources"]
    assert list(lt.overlap.index) == ["F"]
    assert any("G" in n and "not expanded" in n for n in lt.notes)
    assert_weight_accounted(lt, weights)


def test_weight_in_names_a_top_n_list_does_not_show_is_residual_not_dropped() -> None:
    weights = pd.Series({"F": 0.4, "C": 0.6})
    lt = look_through(weights, F, {"F"})
    assert lt.residual_weight == pytest.approx(0.4 * (1 - 0.9))
    assert lt.overlap.loc["F", "residual_weight"] == pytest.approx(0.04)
    assert any("residual 4.00%" in n for n in lt.notes)
    assert_weight_accounted(lt, weights)


def test_a_fund_listing_more_than_100pct_gives_a_negative_residual_and_says_so() -> None:
    lev = holdings({"L": {"A": 1.5, "CASH": -0.2}})
    lt = look_through(pd.Series({"L": 1.0}), lev, {"L"})
    assert lt.residual_weight == pytest.approx(1.0 - 1.3)
    assert any("more than 100%" in n for n in lt.notes)


def test_an_etf_inside_an_etf_stays_a_name_and_is_noted() -> None:
    nested = holdings({"F": {"A": 0.5, "G": 0.5}, "G": {"B": 1.0}})
    lt = look_through(pd.Series({"F": 1.0}), nested, {"F", "G"})
    assert lt.exposures.loc["G", "via_etfs_weight"] == 0.5
    assert "B" not in lt.exposures.index
    assert any("one level deep" in n and "F holds G" in n for n in lt.notes)


# ---------------------------------------------------------------------- shorts, labels, inputs


def test_a_short_fund_position_offsets_the_direct_long() -> None:
    weights = pd.Series({"F": -0.5, "A": 1.5})
    lt = look_through(weights, F, {"F"})
    assert lt.exposures.loc["A", "combined_weight"] == 1.5 - 0.5 * 0.6
    assert lt.exposures.loc["B", "combined_weight"] == pytest.approx(-0.15)
    assert lt.exposures.loc["A", "sources"] == "direct 150.0%; F -30.0%"
    assert lt.residual_weight == pytest.approx(-0.05)
    assert_weight_accounted(lt, weights)


def test_old_symbols_and_class_shares_match_todays_tickers_with_a_note() -> None:
    hold = holdings({"F": {"FB": 0.5, "BRK.B": 0.5}})
    lt = look_through(pd.Series({"F": 0.5, "META": 0.25, "brk/b": 0.25}), hold, {"F"})
    assert lt.exposures.loc["META", "combined_weight"] == 0.5
    assert lt.exposures.loc["BRK-B", "combined_weight"] == 0.5
    assert any("FB→META" in n for n in lt.notes)


def test_several_snapshot_dates_use_each_etfs_latest() -> None:
    dated = F.assign(date=pd.Timestamp("2022-01-03"))
    newer = pd.DataFrame({"etf": ["F"], "holding": ["A"], "weight": [1.0], "date": [pd.Timestamp("2022-02-01")]})
    lt = look_through(pd.Series({"F": 1.0}), pd.concat([dated, newer]), {"F"})
    assert lt.exposures["combined_weight"].to_dict() == {"A": 1.0}
    assert any("latest snapshot" in n for n in lt.notes)


def test_bad_portfolio_weights_are_refused_with_a_clear_message() -> None:
    with pytest.raises(DataValidationError, match="empty"):
        look_through(pd.Series(dtype="float64"), F, {"F"})
    with pytest.raises(DataValidationError, match="non-finite weight.*A"):
        look_through(pd.Series({"A": float("nan"), "F": 1.0}), F, {"F"})
    with pytest.raises(DataValidationError, match="lack column"):
        look_through(pd.Series({"F": 1.0}), F.rename(columns={"weight": "w"}), {"F"})


# ---------------------------------------------------------------------- active share


def test_active_share_of_identical_portfolios_is_zero() -> None:
    w = pd.Series({"A": 0.5, "B": 0.3, "C": 0.2})
    assert active_share(w, w) == 0.0
    assert active_share(w, w * 3) == pytest.approx(0.0, abs=1e-15)  # both normalised to sum 1 first


def test_active_share_of_disjoint_portfolios_is_one() -> None:
    assert active_share(pd.Series({"A": 0.5, "B": 0.5}), pd.Series({"C": 0.7, "D": 0.3})) == pytest.approx(1.0)


def test_active_share_worked_example() -> None:
    p = pd.Series({"A": 0.5, "B": 0.3, "C": 0.2})
    b = pd.Series({"A": 0.4, "B": 0.4, "D": 0.2})
    # ½ (|0.5−0.4| + |0.3−0.4| + |0.2−0| + |0−0.2|) = ½ × 0.6
    assert active_share(p, b) == pytest.approx(0.3)


def test_active_share_with_shorts_can_exceed_the_long_only_range() -> None:
    p = pd.Series({"A": 1.3, "B": -0.3})  # net 1
    b = pd.Series({"A": 0.5, "B": 0.5})
    assert active_share(p, b) == pytest.approx(0.5 * (0.8 + 0.8))
    assert active_share(pd.Series({"A": 1.3, "C": -0.3}), pd.Series({"B": 1.0})) == pytest.approx(1.3)


def test_active_share_refuses_empty_nan_and_non_positive_sums() -> None:
    ok = pd.Series({"A": 1.0})
    with pytest.raises(DataValidationError, match="empty"):
        active_share(pd.Series(dtype="float64"), ok)
    with pytest.raises(DataValidationError, match="non-finite"):
        active_share(ok, pd.Series({"A": float("nan")}))
    with pytest.raises(DataValidationError, match="cannot normalise"):
        active_share(pd.Series({"A": 0.5, "B": -0.5}), ok)


# ---------------------------------------------------------------------- benchmark weights


def test_benchmark_from_an_etf_is_normalised_over_its_listed_holdings() -> None:
    b = benchmark_weights(etf="f", etf_holdings=F)
    assert b.to_dict() == pytest.approx({"A": 2 / 3, "B": 1 / 3})
    assert any("covering 90.0%" in n for n in b.attrs["notes"])
    assert active_share(pd.Series({"F": 1.0}).rename({"F": "A"}), b) == pytest.approx(1 / 3)


def test_benchmark_from_a_file_or_series(tmp_path: Path) -> None:
    path = tmp_path / "bench.csv"
    path.write_text("Symbol,weight_pct\nAAPL,60\nBRK.B,40\n")
    assert benchmark_weights(path).to_dict() == pytest.approx({"AAPL": 0.6, "BRK-B": 0.4})
    assert benchmark_weights(pd.Series({"A": 2.0, "B": 2.0})).to_dict() == {"A": 0.5, "B": 0.5}


def test_benchmark_needs_exactly_one_source_and_a_known_etf() -> None:
    with pytest.raises(DataValidationError, match="either"):
        benchmark_weights()
    with pytest.raises(DataValidationError, match="either"):
        benchmark_weights(pd.Series({"A": 1.0}), etf="F", etf_holdings=F)
    with pytest.raises(UnknownTicker, match="QQQ"):
        benchmark_weights(etf="QQQ", etf_holdings=F)
