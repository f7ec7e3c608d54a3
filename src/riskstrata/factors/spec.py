"""Model specs: a factor model is a named TOML file, not code.

The packaged specs live in ``factors/specs/*.toml`` (US21, US_CORE); a user's own spec is any
TOML file with the same keys, passed by path. :func:`load_spec` validates it once, here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from riskstrata.errors import DataValidationError

REGRESSION_WEIGHTS = ("sqrt_cap", "cap", "equal", "inv_specific_var")
MISSING_POLICIES = ("impute", "drop")
# Default [coverage] min_cap_share: below half the universe's cap, a style's return would be
# mostly regressed on imputed exposures, i.e. on industry + size rather than on its own data.
DEFAULT_MIN_COVERAGE = 0.5
# Descriptors the pipeline knows how to compute (factors/descriptors.py).
KNOWN_DESCRIPTORS = frozenset({
    "log_size", "momentum", "book_to_price", "residual_vol", "total_vol", "beta", "quality", "growth",
    "eps_growth", "leverage", "liquidity", "dividend_yield", "earnings_yield", "ebitda_to_ev",
})


@dataclass(frozen=True)
class StyleSpec:
    name: str
    descriptors: dict[str, float]   # descriptor → blend weight
    missing: str = "impute"         # impute | drop


@dataclass(frozen=True)
class ModelSpec:
    """A factor model: universe rule, factors, descriptor blends, regression and risk settings."""

    name: str
    description: str
    market_factor: str
    styles: list[StyleSpec]
    industries: dict[str, str]      # GICS sector → industry factor name
    universe: dict = field(default_factory=dict)
    regression: dict = field(default_factory=dict)
    risk: dict = field(default_factory=dict)
    coverage: dict = field(default_factory=dict)
    source: str = ""

    @property
    def min_coverage(self) -> float:
        """A style is estimated on a date only when the names with fresh (non-imputed)
        descriptors hold at least this share of the estimation universe's cap."""
        return float(self.coverage.get("min_cap_share", DEFAULT_MIN_COVERAGE))

    @property
    def industry_factors(self) -> list[str]:
        return list(dict.fromkeys(self.industries.values()))

    @property
    def style_factors(self) -> list[str]:
        return [s.name for s in self.styles]

    @property
    def factors(self) -> list[str]:
        """All factors in design-matrix order: market, styles, industries."""
        return [self.market_factor, *self.style_factors, *self.industry_factors]


def packaged_specs() -> dict[str, Path]:
    """Name → path of the specs shipped with the package."""
    folder = resources.files("riskstrata.factors") / "specs"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def load_spec(name_or_path: str | Path) -> ModelSpec:
    """A packaged spec by name (``US21``) or a user's TOML file by path."""
    shipped = packaged_specs()
    path = shipped.get(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        raise DataValidationError(f"no model spec {name_or_path!r}; packaged specs: {sorted(shipped)}, or give a .toml path")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"model spec {path} is not valid TOML: {exc}") from None
    return _validate(raw, str(path))


def _validate(raw: dict, source: str) -> ModelSpec:
    problems = [f"missing key {key!r}" for key in ("name", "styles", "industries") if key not in raw]
    if problems:
        raise DataValidationError(f"model spec {source}: " + "; ".join(problems))
    styles = []
    for i, s in enumerate(raw["styles"]):
        name, desc = s.get("name"), s.get("descriptors", {})
        unknown = sorted(set(desc) - KNOWN_DESCRIPTORS)
        if not name or not desc:
            problems.append(f"style #{i + 1} needs a name and descriptors")
        if unknown:
            problems.append(f"style {name}: unknown descriptors {unknown} (known: {sorted(KNOWN_DESCRIPTORS)})")
        if any(not isinstance(w, (int, float)) or w <= 0 for w in desc.values()):
            problems.append(f"style {name}: descriptor weights must be positive numbers")
        if s.get("missing", "impute") not in MISSING_POLICIES:
            problems.append(f"style {name}: missing must be one of {MISSING_POLICIES}")
        styles.append(StyleSpec(name, {k: float(v) for k, v in desc.items()}, s.get("missing", "impute")))
    weights = raw.get("regression", {}).get("weights", "sqrt_cap")
    if weights not in REGRESSION_WEIGHTS:
        problems.append(f"regression.weights must be one of {REGRESSION_WEIGHTS}")
    share = raw.get("coverage", {}).get("min_cap_share", DEFAULT_MIN_COVERAGE)
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1:
        problems.append("coverage.min_cap_share must be a number in [0, 1]")
    names = [s.name for s in styles] + list(dict.fromkeys(raw["industries"].values()))
    if len(set(names)) != len(names):
        problems.append("factor names must be unique")
    if problems:
        raise DataValidationError(f"model spec {source}: " + "; ".join(problems))
    return ModelSpec(name=raw["name"], description=raw.get("description", ""),
                     market_factor=raw.get("market_factor", "MARKET"), styles=styles,
                     industries=dict(raw["industries"]), universe=raw.get("universe", {}),
                     regression=raw.get("regression", {}), risk=raw.get("risk", {}),
                     coverage=raw.get("coverage", {}), source=source)
