"""The ETF registry: which sector and subsector ETF hedges a stock of a given classification.

The registry is a small CSV (``riskstrata/data/etf_map.csv``, user-editable) with one row per
GICS sector (its Select Sector SPDR) and one row per GICS sub-industry (an industry ETF where
one fits, else the sector SPDR again). A sub-industry whose ETF *is* the sector SPDR has no
subsector factor: the cascade's L3 equals its L2 for it (``subsector_etf == sector_etf``).

CSV columns: ``level`` (sector|subsector), ``gics_sector``, ``gics_sub_industry`` (blank on
sector rows), ``etf`` (the primary), ``alternates`` (``;``-separated, informational),
``inception`` (first trading date of the primary, YYYY-MM-DD), ``note``.

Names are matched leniently (case, spacing, "and" vs "&") and through small alias tables, so
pre-2023 GICS names ("Internet & Direct Marketing Retail", "Telecommunication Services") and
data-vendor sector names ("Technology", "Healthcare") still resolve.

:func:`infer_assignments` is the data-driven fallback for stocks with no classification: it
picks the sector / subsector ETF whose orthogonalised return best explains the stock's.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from os import PathLike

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError, UnknownTicker

MARKET_ETF = "SPY"

# First trading dates of market ETFs that may stand in as the market factor (the CSV holds
# only sector and subsector rows).
MARKET_INCEPTION: dict[str, str] = {"SPY": "1993-01-29", "IVV": "2000-05-19", "VOO": "2010-09-09",
                                    "VTI": "2001-06-15"}

REQUIRED_COLUMNS = ("level", "gics_sector", "gics_sub_industry", "etf")
OPTIONAL_COLUMNS = ("alternates", "inception", "note")
LEVELS = ("sector", "subsector")

# Old GICS / vendor sector names -> current GICS sector. Keys are normalised (see _norm).
SECTOR_ALIASES: dict[str, str] = {
    "telecommunication services": "Communication Services",
    "telecommunications services": "Communication Services",
    "telecommunications": "Communication Services",
    "telecom": "Communication Services",
    "technology": "Information Technology",
    "information tech": "Information Technology",
    "healthcare": "Health Care",
    "financial services": "Financials",
    "financial": "Financials",
    "consumer cyclical": "Consumer Discretionary",
    "consumer defensive": "Consumer Staples",
    "basic materials": "Materials",
    "industrial": "Industrials",
    "realestate": "Real Estate",
}

# Pre-2023 (and misspelt) GICS sub-industry names -> current name(s). Where a 2023 split sent
# one old name to several new ones, the candidate that lives in the stock's sector wins.
SUB_INDUSTRY_ALIASES: dict[str, tuple[str, ...]] = {
    "agricultural products": ("Agricultural Products & Services",),
    "airlines": ("Passenger Airlines",),
    "auto parts & equipment": ("Automotive Parts & Equipment",),
    "construction machinery & heavy trucks": ("Construction Machinery & Heavy Transportation Equipment",),
    "cybersecurity company": ("Systems Software",),
    "general merchandise stores": ("Broadline Retail", "Consumer Staples Merchandise Retail"),
    "department stores": ("Broadline Retail",),
    "internet & direct marketing retail": ("Broadline Retail",),
    "internet retail": ("Broadline Retail",),
    "hypermarkets & super centers": ("Consumer Staples Merchandise Retail",),
    "industrial machinery": ("Industrial Machinery & Supplies & Components",),
    "life sciences tolls & services": ("Life Sciences Tools & Services",),
    "metal & glass containers": ("Metal, Glass & Plastic Containers",),
    "paper packaging": ("Paper & Plastic Packaging Products & Materials",),
    "personal products": ("Personal Care Products",),
    "railroads": ("Rail Transportation",),
    "trucking": ("Cargo Ground Transportation",),
    "residential reits": ("Multi-Family Residential REITs",),
    "specialized reits": ("Other Specialized REITs",),
    "semiconductor equipment": ("Semiconductor Materials & Equipment",),
    "soft drinks": ("Soft Drinks & Non-alcoholic Beverages",),
    "specialty bust chemicals": ("Specialty Chemicals",),
    "specialty stores": ("Other Specialty Retail",),
    "thrifts & mortgage finance": ("Commercial & Residential Mortgage Finance",),
    "other diversified financial services": ("Diversified Financial Services",),
    "internet software & services": ("Internet Services & Infrastructure",),
    "home entertainment software": ("Interactive Home Entertainment",),
    "computer hardware": ("Technology Hardware, Storage & Peripherals",),
    "data processing & outsourced services": ("Data Processing & Outsourced Services",
                                              "Transaction & Payment Processing Services"),
}


def _norm(name: object) -> str:
    """Canonical key of a sector / sub-industry name: casefolded, '&' for 'and', single spaces."""
    if name is None or name is pd.NA or (isinstance(name, float) and np.isnan(name)):
        return ""
    text = str(name).strip().casefold()
    text = re.sub(r"\band\b", "&", text)
    return re.sub(r"\s+", " ", text)


def _clean_ticker(value: object) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().upper()
    return text or None


@lru_cache(maxsize=1)
def _default_table() -> pd.DataFrame:
    path = resources.files("riskstrata") / "data" / "etf_map.csv"
    with resources.as_file(path) as real_path:
        return _read_raw(real_path)


@lru_cache(maxsize=1)
def _default_registry() -> EtfRegistry:
    """The packaged registry, validated once; handed out only through :meth:`EtfRegistry.default`'s copies."""
    return EtfRegistry(_default_table().copy())


def _read_raw(path: str | PathLike[str]) -> pd.DataFrame:
    """The CSV as text columns (blank cells stay '', never NaN)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"cannot read ETF registry {str(path)!r}: {exc}") from exc


def _validate_table(raw: pd.DataFrame, source: str = "table") -> pd.DataFrame:
    """Check and normalise registry rows; raise DataValidationError naming the bad rows."""
    raw = raw.rename(columns=lambda c: str(c).strip().lower())
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataValidationError(
            f"ETF registry {source!r} lacks column(s) {missing}; expected "
            f"{list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)} (the last three optional)")
    table = raw.copy()
    if "inception" in table.columns and pd.api.types.is_datetime64_any_dtype(table["inception"]):
        # An already-validated table (e.g. EtfRegistry(other.table)): back to text, re-checked.
        table["inception"] = table["inception"].dt.strftime("%Y-%m-%d")
    for col in OPTIONAL_COLUMNS:
        if col not in table.columns:
            table[col] = ""
    table = table[list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)].fillna("").astype(str)
    for col in table.columns:
        table[col] = table[col].str.strip()
    table["level"] = table["level"].str.lower()
    table["etf"] = table["etf"].str.upper()
    table["alternates"] = table["alternates"].map(
        lambda s: ";".join(a.strip().upper() for a in s.split(";") if a.strip()))

    # Row numbers as a user sees them in the file (header = line 1).
    def rows(mask: pd.Series) -> list[int]:
        return [int(i) + 2 for i in np.flatnonzero(mask.to_numpy())][:10]

    problems: list[str] = []
    bad_level = ~table["level"].isin(LEVELS)
    if bad_level.any():
        problems.append(f"level must be one of {LEVELS} (lines {rows(bad_level)})")
    if (table["etf"] == "").any():
        problems.append(f"etf is blank (lines {rows(table['etf'] == '')})")
    if (table["gics_sector"] == "").any():
        problems.append(f"gics_sector is blank (lines {rows(table['gics_sector'] == '')})")
    is_sector = table["level"] == "sector"
    is_sub = table["level"] == "subsector"
    if (is_sub & (table["gics_sub_industry"] == "")).any():
        problems.append(f"subsector rows need gics_sub_industry (lines {rows(is_sub & (table['gics_sub_industry'] == ''))})")
    sec_key = table["gics_sector"].map(_norm)
    sub_key = table["gics_sub_industry"].map(_norm)
    dup_sec = is_sector & sec_key.isin(sec_key[is_sector][sec_key[is_sector].duplicated()])
    if dup_sec.any():
        problems.append(f"sector listed twice (lines {rows(dup_sec)})")
    pair = sec_key + "|" + sub_key
    dup_sub = is_sub & pair.isin(pair[is_sub][pair[is_sub].duplicated()])
    if dup_sub.any():
        problems.append(f"sub-industry listed twice in one sector (lines {rows(dup_sub)})")
    orphan = is_sub & ~sec_key.isin(set(sec_key[is_sector]))
    if orphan.any():
        problems.append(f"sub-industry rows whose sector has no sector row (lines {rows(orphan)})")
    inception = pd.to_datetime(table["inception"].replace("", None), errors="coerce", format="%Y-%m-%d")
    bad_date = (table["inception"] != "") & inception.isna()
    if bad_date.any():
        problems.append(f"inception is not YYYY-MM-DD (lines {rows(bad_date)})")
    if problems:
        raise DataValidationError(f"invalid ETF registry {source!r}: " + "; ".join(problems))
    table["inception"] = inception
    return table.reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class EtfRegistry:
    """Sector and sub-industry -> ETF map, plus ETF facts (inception, parent sector).

    table: the registry rows (columns level, gics_sector, gics_sub_industry, etf, alternates,
    inception (Timestamp, NaT = unknown), note). market_etf: the market factor (SPY).
    """

    table: pd.DataFrame
    market_etf: str = MARKET_ETF
    _sector: dict[str, tuple[str, str]] = field(init=False, repr=False)      # key -> (name, etf)
    _sub: dict[tuple[str, str], str] = field(init=False, repr=False)         # (sec key, sub key) -> etf
    _sub_sector: dict[str, set[str]] = field(init=False, repr=False)         # sub key -> sector keys
    _sector_etfs: frozenset[str] = field(init=False, repr=False)
    _parent: dict[str, str] = field(init=False, repr=False)                  # industry ETF -> sector ETF
    _inception: dict[str, pd.Timestamp] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        table = _validate_table(self.table)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "market_etf", str(self.market_etf).strip().upper())
        sector_rows = table[table["level"] == "sector"]
        sub_rows = table[table["level"] == "subsector"]
        sector = {_norm(r.gics_sector): (r.gics_sector, r.etf) for r in sector_rows.itertuples()}
        sub: dict[tuple[str, str], str] = {}
        sub_sector: dict[str, set[str]] = {}
        for r in sub_rows.itertuples():
            sk, uk = _norm(r.gics_sector), _norm(r.gics_sub_industry)
            sub[(sk, uk)] = r.etf
            sub_sector.setdefault(uk, set()).add(sk)
        sector_etfs = frozenset(e for _, e in sector.values())
        # An industry ETF's parent is the sector whose sub-industries use it most (ties: the
        # first in file order), e.g. XRT serves both discretionary and staples retailers -> XLY.
        industry = sub_rows[~sub_rows["etf"].isin(sector_etfs)]
        counts = industry.assign(order=np.arange(len(industry))).groupby(["etf", "gics_sector"], sort=False) \
            .agg(n=("order", "size"), first=("order", "min")).reset_index() \
            .sort_values(["etf", "n", "first"], ascending=[True, False, True])
        parent = {r.etf: sector[_norm(r.gics_sector)][1] for r in counts.drop_duplicates("etf").itertuples()}
        # Alternates inherit the parent of the first row that lists them (if not known otherwise).
        for r in sub_rows.itertuples():
            own = parent.get(r.etf, sector[_norm(r.gics_sector)][1])
            for alt in filter(None, r.alternates.split(";")):
                if alt not in sector_etfs and alt not in parent and alt != self.market_etf:
                    parent[alt] = own
        inception = {e: d for e, d in zip(table["etf"], table["inception"]) if pd.notna(d)}
        if self.market_etf in MARKET_INCEPTION:
            inception.setdefault(self.market_etf, pd.Timestamp(MARKET_INCEPTION[self.market_etf]))
        for name, value in (("_sector", sector), ("_sub", sub), ("_sub_sector", sub_sector),
                            ("_sector_etfs", sector_etfs), ("_parent", parent), ("_inception", inception)):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        levels = self.table["level"].value_counts()
        return (f"EtfRegistry({levels.get('sector', 0)} sectors, {levels.get('subsector', 0)} "
                f"sub-industries, {len(self.etfs())} ETFs, market {self.market_etf})")

    # ------------------------------------------------------------------ construction
    @classmethod
    def default(cls) -> EtfRegistry:
        """The registry shipped with the package (``riskstrata/data/etf_map.csv``).

        Validated once per process (~35 ms); each call gets its own copy of the table and lookup
        maps (~0.1 ms), so a caller that edits what it was given changes nothing for the others."""
        return _default_registry()._private_copy()

    def _private_copy(self) -> EtfRegistry:
        """This registry with a table and lookup maps of its own, without validating it again."""
        twin = copy.copy(self)  # the instance's fields as they are: __post_init__ does not run
        object.__setattr__(twin, "table", self.table.copy())
        for name in ("_sector", "_sub", "_parent", "_inception"):  # values are str, tuples, Timestamps: immutable
            object.__setattr__(twin, name, dict(getattr(self, name)))
        object.__setattr__(twin, "_sub_sector", {key: set(sectors) for key, sectors in self._sub_sector.items()})
        return twin

    @classmethod
    def from_csv(cls, path: str | PathLike[str], market_etf: str = MARKET_ETF) -> EtfRegistry:
        """A user-edited registry; raises DataValidationError on missing columns or bad rows."""
        return cls(_validate_table(_read_raw(path), source=str(path)), market_etf=market_etf)

    # ------------------------------------------------------------------ lookups
    def _sector_key(self, gics_sector: object) -> str | None:
        key = _norm(gics_sector)
        if not key:
            return None
        if key in self._sector:
            return key
        alias = SECTOR_ALIASES.get(key)
        return _norm(alias) if alias and _norm(alias) in self._sector else None

    def _sub_key(self, sector_key: str | None, gics_sub_industry: object) -> str | None:
        """The registry's key for a sub-industry, within the sector when one is given."""
        key = _norm(gics_sub_industry)
        if not key:
            return None
        candidates = [key] + [_norm(n) for n in SUB_INDUSTRY_ALIASES.get(key, ())]
        for cand in candidates:
            sectors = self._sub_sector.get(cand, set())
            if sector_key is not None and sector_key in sectors:
                return cand
            if sector_key is None and len(sectors) == 1:
                return cand
        return None

    def sector_name(self, gics_sector: str | None) -> str | None:
        """The registry's spelling of a sector (resolving aliases), None if unknown."""
        key = self._sector_key(gics_sector)
        return self._sector[key][0] if key else None

    def sector_etf(self, gics_sector: str | None) -> str | None:
        """The sector ETF of a GICS sector (old names accepted), None if unknown."""
        key = self._sector_key(gics_sector)
        return self._sector[key][1] if key else None

    def subsector_etf(self, gics_sector: str | None, gics_sub_industry: str | None) -> str | None:
        """The subsector ETF of a sub-industry; the sector ETF when the sub-industry is blank or
        unknown in that sector; None when neither resolves. With a blank sector, a sub-industry
        name that belongs to exactly one sector still resolves."""
        sec = self._sector_key(gics_sector)
        sub = self._sub_key(sec, gics_sub_industry)
        if sub is not None:
            if sec is None:
                (sec,) = self._sub_sector[sub]
            return self._sub[(sec, sub)]
        return self._sector[sec][1] if sec else None

    def _resolve(self, gics_sector: object, gics_sub_industry: object) -> tuple[str | None, str | None, str | None]:
        """(sector_etf, subsector_etf, note) for one classification; note None when clean."""
        sec = self._sector_key(gics_sector)
        if sec is None and _norm(gics_sector):
            return None, None, f"unknown sector {str(gics_sector).strip()!r}"
        sub = self._sub_key(sec, gics_sub_industry)
        if sec is None:
            if sub is None:
                if _norm(gics_sub_industry):
                    return None, None, f"no sector and unknown sub-industry {str(gics_sub_industry).strip()!r}"
                return None, None, "no classification"
            (sec,) = self._sub_sector[sub]
        sector_etf = self._sector[sec][1]
        if sub is None:
            note = (f"sub-industry {str(gics_sub_industry).strip()!r} not in registry for "
                    f"{self._sector[sec][0]}; sector ETF used") if _norm(gics_sub_industry) else None
            return sector_etf, sector_etf, note
        return sector_etf, self._sub[(sec, sub)], None

    def etfs(self) -> list[str]:
        """All primary ETFs: the market ETF first, then sector and subsector ETFs in file order."""
        return list(dict.fromkeys([self.market_etf, *self.table["etf"]]))

    def sector_etfs(self) -> list[str]:
        """The sector ETFs in file order."""
        return list(dict.fromkeys(self.table.loc[self.table["level"] == "sector", "etf"]))

    def known_etfs(self) -> set[str]:
        """Primaries, alternates and the market ETF: every ticker the registry treats as an ETF."""
        alts = {a for s in self.table["alternates"] for a in s.split(";") if a}
        return set(self.etfs()) | alts

    def inception(self, etf: str) -> pd.Timestamp | None:
        """First trading date of a primary ETF as recorded in the registry; None if unknown."""
        return self._inception.get(str(etf).strip().upper())

    def parent_of(self, etf: str) -> dict[str, str | None]:
        """How to decompose an ETF held as an asset.

        The market ETF and sector ETFs regress on the market only ({None, None}); an industry
        ETF regresses on the market and its parent sector ETF (subsector None: it *is* one).
        Raises UnknownTicker for a ticker the registry does not know.
        """
        key = str(etf).strip().upper()
        if key == self.market_etf or key in self._sector_etfs:
            return {"sector_etf": None, "subsector_etf": None}
        if key in self._parent:
            return {"sector_etf": self._parent[key], "subsector_etf": None}
        raise UnknownTicker(key, "not an ETF in the registry")

    # ------------------------------------------------------------------ frames
    def assign(self, classifications: pd.DataFrame) -> pd.DataFrame:
        """Attach sector and subsector ETFs to classified securities.

        classifications: one row per security (or per dated record), columns ``ticker`` or
        ``security_id``, ``gics_sector``, ``gics_sub_industry``; optional ``sector_etf`` /
        ``subsector_etf`` given directly (non-blank values win over GICS) and anything else
        (``valid_from``/``valid_to``…), carried through unchanged.

        Returns the same rows in the same order with columns ``sector_etf``, ``subsector_etf``,
        ``assignment_source`` ('direct' | 'registry_etf' | 'gics' | 'unassigned') and ``note``
        (why a row is unassigned or fell back; None when clean). No row is ever dropped.
        """
        if "ticker" not in classifications.columns and "security_id" not in classifications.columns:
            raise DataValidationError("classifications need a 'ticker' or 'security_id' column")
        out = classifications.copy()
        n = len(out)

        def col(name: str) -> np.ndarray:
            return out[name].to_numpy(dtype=object) if name in out.columns else np.full(n, None, dtype=object)

        gics_sec, gics_sub = col("gics_sector"), col("gics_sub_industry")
        direct_sec = np.array([_clean_ticker(v) for v in col("sector_etf")], dtype=object)
        direct_sub = np.array([_clean_ticker(v) for v in col("subsector_etf")], dtype=object)
        tickers = np.array([_clean_ticker(v) for v in col("ticker")], dtype=object)
        is_etf = np.array([str(v).strip().lower() == "etf" for v in col("asset_type")])
        known = self.known_etfs()

        # Resolve each distinct classification once: universes repeat a few hundred pairs.
        keys = pd.Series([f"{_norm(s)}|{_norm(u)}" for s, u in zip(gics_sec, gics_sub)], dtype=object)
        codes, _ = pd.factorize(keys)
        first = pd.Series(np.arange(n)).groupby(codes).first().to_numpy()
        resolved = [self._resolve(gics_sec[i], gics_sub[i]) for i in first]

        sector_etf = np.full(n, None, dtype=object)
        subsector_etf = np.full(n, None, dtype=object)
        source = np.full(n, "unassigned", dtype=object)
        note = np.full(n, None, dtype=object)
        for i in range(n):
            g_sec, g_sub, g_note = resolved[codes[i]]
            if direct_sec[i] is not None or direct_sub[i] is not None:
                sec, sub = direct_sec[i], direct_sub[i]
                if sec is None:
                    sec = self._parent.get(sub) or g_sec
                if sec is None:
                    # A lone ETF with no known sector: hedge with it at the sector level.
                    sec, note[i] = sub, f"{sub} given without a sector ETF; used as the sector ETF"
                if sub is None:
                    # Keep the GICS subsector only if it hangs off the sector given directly.
                    sub = g_sub if (g_sec is not None and g_sec == sec) else sec
                sector_etf[i], subsector_etf[i], source[i] = sec, sub, "direct"
            elif tickers[i] is not None and tickers[i] in known:
                parent = self.parent_of(tickers[i])
                sector_etf[i], subsector_etf[i] = parent["sector_etf"], parent["subsector_etf"]
                source[i] = "registry_etf"
                note[i] = "ETF decomposed on the market" + (
                    f" and {parent['sector_etf']}" if parent["sector_etf"] else "")
            elif g_sec is not None:
                sector_etf[i], subsector_etf[i], source[i], note[i] = g_sec, g_sub, "gics", g_note
            else:
                note[i] = "ETF not in the registry" if is_etf[i] else g_note
        out["sector_etf"] = sector_etf
        out["subsector_etf"] = subsector_etf
        out["assignment_source"] = source
        out["note"] = note
        return out


# ---------------------------------------------------------------------------------------------
# Data-driven fallback: which ETFs explain an unclassified stock best.

def _masked_cov(r0: np.ndarray, r0_sq: np.ndarray, valid: np.ndarray, x: np.ndarray,
                rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-stock covariance of [r, x_1..x_k] over the rows where the stock and every x are valid.

    r0, r0_sq: (T, N) returns with NaN -> 0 and their squares; valid: (T, N) float 1/0;
    x: (T, k) factor returns; rows: (T,) bool, True where every x is valid.
    Returns cov (N, k+1, k+1) and n (N,) observations. Pairwise-complete sums come from three
    matrix products (valid' G, r0' H, r0_sq' w), so no Python loop over stocks is needed.
    """
    t, k = x.shape
    w = rows.astype(np.float64)
    xw = np.where(rows[:, None], x, 0.0)
    iu = np.triu_indices(k)
    g = np.column_stack([w, xw, xw[:, iu[0]] * xw[:, iu[1]]])      # (T, 1 + k + k(k+1)/2)
    a = valid.T @ g                                                   # (N, ...)
    b = r0.T @ np.column_stack([w, xw])                               # (N, 1 + k)
    srr = r0_sq.T @ w                                                 # (N,)
    n = a[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        inv_n = np.where(n > 0, 1.0 / n, np.nan)
        mean = np.column_stack([b[:, 0], a[:, 1:1 + k]]) * inv_n[:, None]          # (N, k+1)
        second = np.empty((len(n), k + 1, k + 1))
        second[:, 0, 0] = srr
        second[:, 0, 1:] = b[:, 1:]
        second[:, 1:, 0] = b[:, 1:]
        xx = a[:, 1 + k:]
        second[:, 1 + iu[0], 1 + iu[1]] = xx
        second[:, 1 + iu[1], 1 + iu[0]] = xx
        cov = second * inv_n[:, None, None] - mean[:, :, None] * mean[:, None, :]
    return cov, n


def _partial_r2(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared partial correlation of r (index 0) with the last variable given the others, and
    the R² of r on all the others. cov: (N, k+1, k+1). NaN where degenerate."""
    ok = np.isfinite(cov).all(axis=(1, 2))
    safe = np.where(ok[:, None, None], cov, np.eye(cov.shape[1]))
    prec = np.linalg.pinv(safe)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho2 = prec[:, 0, -1] ** 2 / (prec[:, 0, 0] * prec[:, -1, -1])
        r2 = 1.0 - 1.0 / (safe[:, 0, 0] * prec[:, 0, 0])
    bad = ~ok | (safe[:, 0, 0] <= 0) | (np.diagonal(safe, axis1=1, axis2=2) <= 0).any(axis=1)
    return np.where(bad, np.nan, rho2), np.where(bad, np.nan, r2)


def _sector_candidates(registry: EtfRegistry, sector_etf: str, available: pd.Index) -> list[str]:
    """Industry ETFs (not the sector ETF itself) of a sector's sub-industries, in file order."""
    tab = registry.table
    name = tab.loc[(tab["level"] == "sector") & (tab["etf"] == sector_etf), "gics_sector"]
    subs = tab.loc[(tab["level"] == "subsector") & tab["gics_sector"].isin(name), "etf"]
    return [e for e in dict.fromkeys(subs) if e != sector_etf and e in available]


def infer_assignments(returns: pd.DataFrame, etf_returns: pd.DataFrame, registry: EtfRegistry,
                      *, min_obs: int = 126, min_sub_r2: float = 0.005,
                      min_sub_f: float = 10.83) -> pd.DataFrame:
    """Assign sector and subsector ETFs to unclassified stocks from their return co-movement.

    returns: (T, N) simple daily returns, dates x tickers, NaN = missing. etf_returns: (T', E)
    the same for ETFs; it must hold the registry's market ETF; sector and subsector ETFs absent
    from it are simply not candidates. Rows are aligned on returns' dates; every fit uses the
    rows where the stock and the ETFs involved all have a return (pairwise complete).

    Sector: the sector whose ETFs, orthogonalised on the market (s* = s − λ·m, and its industry
    ETFs' u* given m and s), explain the largest share of the stock's market residual. Each
    sector is scored by its best model, s alone or s with one of its industry ETFs, through
    a BIC on that share, log(1 − share) + p·log(n)/n, p = 1 or 2 ETFs, so a two-ETF model must
    earn its extra regressor. Using the industry ETF as evidence matters: a regional bank is
    far closer to KRE than to XLF. Every stock with ``min_obs`` usable rows gets a sector.

    Subsector: among the chosen sector's industry ETFs, the highest partial R² of r and u given
    (m, s), kept only if it clears both ``min_sub_r2`` (economic size, like L*'s θ) and an F
    statistic of ``min_sub_f`` (10.83 = p 0.001 for one restriction), because the best of ten
    noise candidates always explains *something*; otherwise subsector_etf = sector_etf.

    Returns a frame indexed by ticker: sector_etf, subsector_etf, assignment_source ('inferred',
    or 'unassigned' with a note such as 'insufficient history'), fit_r2 (R² of r on the chosen
    ETFs, market included), n_obs (rows with the stock and the market), note.
    """
    market = registry.market_etf
    if market not in etf_returns.columns:
        raise DataValidationError(f"etf_returns lacks the market ETF {market!r}")
    etf = etf_returns.reindex(returns.index)
    if not etf[market].notna().any():
        raise DataValidationError("etf_returns and returns share no dates with a market return")
    sectors = [e for e in registry.sector_etfs() if e in etf.columns]
    if not sectors:
        raise DataValidationError("etf_returns holds none of the registry's sector ETFs")
    r = returns.to_numpy(dtype=np.float64)
    valid_b = np.isfinite(r)
    r0 = np.where(valid_b, r, 0.0)
    r0_sq = r0 * r0
    valid = valid_b.astype(np.float64)
    m = etf[market].to_numpy(dtype=np.float64)
    n_stocks = r.shape[1]
    n_obs = (valid_b & np.isfinite(m)[:, None]).sum(axis=0)

    def fit(columns: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """BIC criterion of the ETF block beyond m, partial R² of the last ETF, R², n."""
        x = np.column_stack([m] + [etf[c].to_numpy(dtype=np.float64) for c in columns])
        cov, n = _masked_cov(r0, r0_sq, valid, x, np.isfinite(x).all(axis=1))
        rho2_last, r2 = _partial_r2(cov)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2_m = cov[:, 0, 1] ** 2 / (cov[:, 0, 0] * cov[:, 1, 1])
            share = np.clip((r2 - r2_m) / (1.0 - r2_m), 0.0, 1.0 - 1e-12)
            crit = np.log1p(-share) + len(columns) * np.log(n) / n
        crit = np.where((n >= min_obs) & np.isfinite(crit), crit, np.inf)
        return crit, rho2_last, r2, n

    crit = np.full((len(sectors), n_stocks), np.inf)
    fit_r2 = np.full((len(sectors), n_stocks), np.nan)
    sub_pick = np.full((len(sectors), n_stocks), None, dtype=object)
    for k, sec in enumerate(sectors):
        crit[k], _, fit_r2[k], _ = fit([sec])
        sub_pick[k] = sec
        best_rho2 = np.full(n_stocks, -np.inf)
        for cand in _sector_candidates(registry, sec, etf.columns):
            c, rho2, r2, n = fit([sec, cand])
            crit[k] = np.minimum(crit[k], c)
            with np.errstate(invalid="ignore", divide="ignore"):
                f_stat = rho2 * (n - 4) / (1.0 - rho2)
            take = (n >= min_obs) & (rho2 >= min_sub_r2) & (f_stat >= min_sub_f) & (rho2 > best_rho2)
            best_rho2 = np.where(take, rho2, best_rho2)
            sub_pick[k, take] = cand
            fit_r2[k, take] = r2[take]

    cols = np.arange(n_stocks)
    best = np.argmin(crit, axis=0)
    has_sector = np.isfinite(crit[best, cols])
    sector_etf = np.where(has_sector, np.array(sectors, dtype=object)[best], None)
    subsector_etf = np.where(has_sector, sub_pick[best, cols], None)
    note = np.full(n_stocks, None, dtype=object)
    note[~has_sector] = np.where(n_obs[~has_sector] < min_obs, "insufficient history",
                                 "no sector ETF overlaps enough of its history")
    return pd.DataFrame({
        "sector_etf": sector_etf, "subsector_etf": subsector_etf,
        "assignment_source": np.where(has_sector, "inferred", "unassigned"),
        "fit_r2": np.where(has_sector, fit_r2[best, cols], np.nan),
        "n_obs": n_obs.astype(np.int64), "note": note,
    }, index=pd.Index(returns.columns, name="ticker"))
