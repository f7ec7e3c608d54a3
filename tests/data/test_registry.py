"""The ETF registry: the packaged map, lookups, assign() and the data-driven fallback."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.registry import MARKET_ETF, EtfRegistry, infer_assignments
from riskstrata.data.synthetic import synthetic_market
from riskstrata.errors import DataValidationError, UnknownTicker

SHARED = Path(os.environ.get("RISKSTRATA_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
SELECT_SECTOR_SPDRS = {"XLK", "XLF", "XLV", "XLE", "XLY", "XLP", "XLI", "XLB", "XLU", "XLC", "XLRE"}


def shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (tests on real data need ../shared/data)")
    return path


@pytest.fixture(scope="module")
def registry() -> EtfRegistry:
    return EtfRegistry.default()


# ----------------------------------------------------------------------------- the packaged map

def test_default_registry_has_the_eleven_select_sector_spdrs(registry):
    sectors = registry.table[registry.table["level"] == "sector"]
    assert len(sectors) == 11
    assert set(sectors["etf"]) == SELECT_SECTOR_SPDRS
    assert registry.market_etf == MARKET_ETF == "SPY"


@pytest.mark.parametrize("sector, sub, etf", [
    ("Information Technology", "Semiconductors", "SOXX"),
    ("Information Technology", "Application Software", "IGV"),
    ("Financials", "Regional Banks", "KRE"),
    ("Health Care", "Biotechnology", "XBI"),
    ("Consumer Discretionary", "Homebuilding", "ITB"),
    ("Energy", "Oil & Gas Exploration & Production", "XOP"),
    ("Consumer Staples", "Packaged Foods & Meats", "PBJ"),
])
def test_well_known_sub_industries_map_to_their_industry_etf(registry, sector, sub, etf):
    assert registry.subsector_etf(sector, sub) == etf


def test_sector_spdr_rows_say_so_in_the_note(registry):
    t = registry.table
    subs = t[t["level"] == "subsector"]
    sector_etf = subs["gics_sector"].map(registry.sector_etf)
    fallback = subs[subs["etf"] == sector_etf]
    assert len(fallback) > 0
    assert fallback["note"].str.contains("sector SPDR").all(), fallback.loc[
        ~fallback["note"].str.contains("sector SPDR"), "gics_sub_industry"].tolist()


def test_every_row_has_an_inception_date(registry):
    assert registry.table["inception"].notna().all()
    assert registry.inception("XLC") == pd.Timestamp("2018-06-19")
    assert registry.inception("XLRE") == pd.Timestamp("2015-10-08")
    assert registry.inception("XLK") == pd.Timestamp("1998-12-22")
    assert registry.inception("SPY") == pd.Timestamp("1993-01-29")
    assert registry.inception("NOPE") is None


@pytest.mark.realdata
def test_every_current_gics_sub_industry_maps_to_an_etf(registry):
    gics = pd.read_csv(shared("reference/gics_current.csv"))
    pairs = gics[["gics_sector", "gics_sub_industry"]].drop_duplicates()
    # Mapped to an ETF of its own row, not merely rescued by the sector fallback.
    own = set(zip(registry.table["gics_sector"], registry.table["gics_sub_industry"]))
    missing = [p for p in pairs.itertuples(index=False) if (p.gics_sector, p.gics_sub_industry) not in own]
    assert not missing, f"sub-industries absent from the registry: {missing}"
    assert all(registry.subsector_etf(s, u) for s, u in pairs.itertuples(index=False))


@pytest.mark.realdata
def test_agreement_with_the_reference_etf_map(registry):
    ref = pd.read_csv(shared("reference/etf_map.csv"), keep_default_na=False)
    merged = ref.merge(registry.table, on=["level", "gics_sector", "gics_sub_industry"], suffixes=("_ref", ""))
    sectors = merged[merged["level"] == "sector"]
    assert len(sectors) == 11 and (sectors["etf"] == sectors["etf_ref"]).all()
    subs = merged[merged["level"] == "subsector"]
    assert len(subs) == (ref["level"] == "subsector").sum(), "some reference sub-industries are not in the registry"
    agree = [etf == primary or etf in alts.split(";")
             for etf, primary, alts in zip(subs["etf"], subs["etf_ref"], subs["alternates_ref"])]
    share = float(np.mean(agree))
    differ = subs.loc[[not a for a in agree], ["gics_sub_industry", "etf", "etf_ref"]]
    print(f"\nsub-industry agreement with reference etf_map.csv: {share:.1%} of {len(subs)}; "
          f"different: {differ.to_dict('records')}")
    assert share >= 0.80


@pytest.mark.realdata
def test_every_named_etf_has_prices_and_a_plausible_inception(registry):
    duckdb = pytest.importorskip("duckdb")
    core = shared("prices/core.parquet")
    first = duckdb.sql(f"select ticker, min(date) as first from '{core}' group by ticker").df() \
        .set_index("ticker")["first"]
    named = registry.known_etfs()
    assert not named - set(first.index), f"ETFs without prices: {sorted(named - set(first.index))}"
    for etf in registry.etfs():
        gap = abs((registry.inception(etf) - first[etf]).days)
        assert gap <= 7, f"{etf}: registry inception {registry.inception(etf).date()} vs first price {first[etf].date()}"


# ----------------------------------------------------------------------------- lookups

def test_old_and_vendor_sector_names_resolve(registry):
    assert registry.sector_etf("Telecommunication Services") == "XLC"
    assert registry.sector_etf("Technology") == "XLK"
    assert registry.sector_etf("information technology") == "XLK"
    assert registry.sector_etf("Healthcare") == "XLV"
    assert registry.sector_etf("Crypto") is None
    assert registry.sector_etf(None) is None


def test_old_sub_industry_names_and_spellings_resolve(registry):
    assert registry.subsector_etf("Consumer Discretionary", "Internet & Direct Marketing Retail") == "FDN"
    assert registry.subsector_etf("Industrials", "Airlines") == "JETS"
    assert registry.subsector_etf("Information Technology", "Semiconductor Equipment") == "SOXX"
    assert registry.subsector_etf("Telecommunication Services", "Integrated Telecommunication Services") == "XTL"
    assert registry.subsector_etf("Health Care", "biotechnology") == "XBI"
    assert registry.subsector_etf("Consumer Staples", "Soft Drinks and Non-alcoholic Beverages") == "PBJ"


def test_subsector_falls_back_to_the_sector_etf(registry):
    assert registry.subsector_etf("Financials", None) == "XLF"
    assert registry.subsector_etf("Financials", "") == "XLF"
    assert registry.subsector_etf("Financials", "Underwater Basket Weaving") == "XLF"
    # A sub-industry of another sector does not leak across: the stock's sector decides.
    assert registry.subsector_etf("Financials", "Semiconductors") == "XLF"
    # No sector given: a sub-industry that belongs to one sector still resolves.
    assert registry.subsector_etf(None, "Regional Banks") == "KRE"
    assert registry.subsector_etf(None, None) is None
    assert registry.subsector_etf("Crypto", None) is None


def test_etfs_lists_the_market_first_then_unique_primaries(registry):
    etfs = registry.etfs()
    assert etfs[0] == "SPY"
    assert len(etfs) == len(set(etfs))
    assert SELECT_SECTOR_SPDRS | {"SOXX", "IGV", "KRE", "XBI", "PBJ"} <= set(etfs)


def test_parent_of_tells_how_to_decompose_an_etf(registry):
    none = {"sector_etf": None, "subsector_etf": None}
    assert registry.parent_of("SPY") == none
    assert registry.parent_of("XLK") == none
    assert registry.parent_of("SOXX") == {"sector_etf": "XLK", "subsector_etf": None}
    assert registry.parent_of("KRE") == {"sector_etf": "XLF", "subsector_etf": None}
    assert registry.parent_of("XRT")["sector_etf"] == "XLY"     # mostly discretionary retailers
    assert registry.parent_of("SMH")["sector_etf"] == "XLK"     # alternates resolve too
    with pytest.raises(UnknownTicker):
        registry.parent_of("AAPL")


# ----------------------------------------------------------------------------- user CSV

def test_from_csv_reads_a_user_copy(tmp_path, registry):
    path = tmp_path / "my_map.csv"
    table = registry.table.copy()
    table["inception"] = table["inception"].dt.strftime("%Y-%m-%d")
    table.loc[table["gics_sub_industry"] == "Semiconductors", "etf"] = "SMH"
    table.to_csv(path, index=False)
    mine = EtfRegistry.from_csv(path)
    assert mine.subsector_etf("Information Technology", "Semiconductors") == "SMH"
    assert mine.sector_etf("Financials") == "XLF"


def test_from_csv_without_optional_columns(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text("level,gics_sector,gics_sub_industry,etf\n"
                    "sector,Information Technology,,XLK\n"
                    "subsector,Information Technology,Semiconductors,SOXX\n")
    tiny = EtfRegistry.from_csv(path)
    assert tiny.subsector_etf("Technology", "Semiconductors") == "SOXX"
    assert tiny.inception("SOXX") is None


@pytest.mark.parametrize("content, message", [
    ("level,gics_sector,etf\nsector,Energy,XLE\n", "gics_sub_industry"),
    ("level,gics_sector,gics_sub_industry,etf\nindustry,Energy,,XLE\n", "level must be one of"),
    ("level,gics_sector,gics_sub_industry,etf\nsector,Energy,,\n", "etf is blank"),
    ("level,gics_sector,gics_sub_industry,etf\nsubsector,Energy,Oil & Gas Drilling,OIH\n", "has no sector row"),
    ("level,gics_sector,gics_sub_industry,etf\nsector,Energy,,XLE\nsector,Energy,,IYE\n", "sector listed twice"),
    ("level,gics_sector,gics_sub_industry,etf,inception\nsector,Energy,,XLE,22/12/1998\n", "YYYY-MM-DD"),
    ("", "cannot read"),
])
def test_from_csv_rejects_a_malformed_file_with_a_clear_message(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataValidationError, match=message):
        EtfRegistry.from_csv(path)


def test_from_csv_missing_file_is_a_validation_error(tmp_path):
    with pytest.raises(DataValidationError, match="cannot read"):
        EtfRegistry.from_csv(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- assign()

@pytest.fixture()
def classifications() -> pd.DataFrame:
    return pd.DataFrame({
        "ticker": ["NVDA", "KEY", "WEIRD", "NOCLS", "SOXX", "XLK", "JPM", "AMD", "NVDA", "OLDT"],
        "gics_sector": ["Information Technology", "Financials", "Crypto", None, None, None,
                        "Financials", "Information Technology", "Information Technology",
                        "Telecommunication Services"],
        "gics_sub_industry": ["Semiconductors", "Regional Banks", None, None, None, None,
                              "Diversified Banks", "Made-up Industry", "Semiconductors",
                              "Integrated Telecommunication Services"],
        "sector_etf": [None, None, None, None, None, None, "XLK", None, None, None],
        "subsector_etf": [None, None, None, None, None, None, None, None, "SMH", None],
        "valid_from": pd.to_datetime(["2020-01-01"] * 8 + ["2023-01-01", "2015-01-01"]),
        "valid_to": pd.to_datetime([None] * 10),
    }, index=pd.RangeIndex(100, 110))


def test_assign_never_drops_a_row_and_keeps_order_and_extra_columns(registry, classifications):
    out = registry.assign(classifications)
    assert len(out) == len(classifications)
    assert out.index.equals(classifications.index)
    assert out["ticker"].tolist() == classifications["ticker"].tolist()
    pd.testing.assert_series_equal(out["valid_from"], classifications["valid_from"])
    assert {"sector_etf", "subsector_etf", "assignment_source", "note"} <= set(out.columns)


def test_assign_from_gics(registry, classifications):
    out = registry.assign(classifications).set_index(["ticker", "valid_from"])
    nvda = out.loc[("NVDA", pd.Timestamp("2020-01-01"))]
    assert (nvda["sector_etf"], nvda["subsector_etf"], nvda["assignment_source"]) == ("XLK", "SOXX", "gics")
    assert out.loc[("KEY", pd.Timestamp("2020-01-01")), "subsector_etf"] == "KRE"
    assert out.loc[("OLDT", pd.Timestamp("2015-01-01")), "subsector_etf"] == "XTL"
    amd = out.loc[("AMD", pd.Timestamp("2020-01-01"))]
    assert (amd["sector_etf"], amd["subsector_etf"], amd["assignment_source"]) == ("XLK", "XLK", "gics")
    assert "Made-up Industry" in amd["note"]


def test_direct_etfs_win_over_gics(registry, classifications):
    out = registry.assign(classifications).set_index(["ticker", "valid_from"])
    jpm = out.loc[("JPM", pd.Timestamp("2020-01-01"))]
    # Sector given directly as XLK: the GICS subsector (KBE, a financials ETF) no longer applies.
    assert (jpm["sector_etf"], jpm["subsector_etf"], jpm["assignment_source"]) == ("XLK", "XLK", "direct")
    nvda = out.loc[("NVDA", pd.Timestamp("2023-01-01"))]
    assert (nvda["sector_etf"], nvda["subsector_etf"], nvda["assignment_source"]) == ("XLK", "SMH", "direct")


def test_unknown_sector_is_unassigned_with_a_reason(registry, classifications):
    out = registry.assign(classifications).set_index("ticker")
    weird, nocls = out.loc["WEIRD"], out.loc["NOCLS"]
    assert weird["assignment_source"] == "unassigned" and pd.isna(weird["sector_etf"])
    assert "Crypto" in weird["note"]
    assert nocls["assignment_source"] == "unassigned" and nocls["note"] == "no classification"


def test_etfs_themselves_are_assigned_from_the_registry(registry, classifications):
    out = registry.assign(classifications).set_index("ticker")
    assert out.loc["SOXX", "assignment_source"] == "registry_etf"
    assert out.loc["SOXX", "sector_etf"] == "XLK" and pd.isna(out.loc["SOXX", "subsector_etf"])
    assert out.loc["XLK", "assignment_source"] == "registry_etf" and pd.isna(out.loc["XLK", "sector_etf"])


def test_assign_needs_an_identifier(registry):
    with pytest.raises(DataValidationError, match="ticker"):
        registry.assign(pd.DataFrame({"gics_sector": ["Energy"]}))


def test_assign_accepts_security_id_and_an_empty_frame(registry):
    out = registry.assign(pd.DataFrame({"security_id": ["BBG1"], "gics_sector": ["Energy"],
                                        "gics_sub_industry": ["Oil & Gas Drilling"]}))
    assert out.loc[0, "subsector_etf"] == "OIH"
    empty = registry.assign(pd.DataFrame(columns=["ticker", "gics_sector", "gics_sub_industry"]))
    assert len(empty) == 0 and "assignment_source" in empty.columns


# ----------------------------------------------------------------------------- inference

@pytest.fixture(scope="module")
def market():
    return synthetic_market(n_stocks=300, seed=7)


def test_inference_recovers_the_true_sector_etf(registry, market):
    inferred = infer_assignments(market.returns, market.etf_returns, registry)
    assert inferred.index.equals(market.returns.columns)
    truth = market.assignments.reindex(inferred.index)
    exposed = market.truth["beta_sec"].reindex(inferred.index) != 0
    hit = (inferred["sector_etf"] == truth["sector_etf"])[exposed]
    print(f"\nsector ETF recovered for {hit.mean():.1%} of {exposed.sum()} stocks; "
          f"subsector for {(inferred['subsector_etf'] == truth['subsector_etf']).mean():.1%}")
    assert hit.mean() >= 0.90
    assert (inferred["assignment_source"] == "inferred").all()
    assert inferred["fit_r2"].between(0, 1).all()


def test_inference_flags_short_histories_instead_of_guessing(registry, market):
    returns = market.returns.iloc[:, :5].copy()
    returns.iloc[:-100, 0] = np.nan                                   # 100 rows < min_obs
    returns.iloc[:, 1] = np.nan                                       # none at all
    inferred = infer_assignments(returns, market.etf_returns, registry, min_obs=126)
    for t in returns.columns[:2]:
        row = inferred.loc[t]
        assert pd.isna(row["sector_etf"]) and pd.isna(row["subsector_etf"])
        assert row["note"] == "insufficient history" and row["assignment_source"] == "unassigned"
    assert (inferred["assignment_source"].iloc[2:] == "inferred").all()


def test_inference_needs_the_market_etf(registry, market):
    with pytest.raises(DataValidationError, match="SPY"):
        infer_assignments(market.returns, market.etf_returns.drop(columns="SPY"), registry)
