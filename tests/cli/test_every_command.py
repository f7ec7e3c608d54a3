"""Every command of ``riskstrata`` runs: its --help, and one real invocation on a small store.

The command tree is walked from ``riskstrata.cli.app``; every leaf command (``metrics``,
``ingest prices``, ``keys list`` …) must have an entry in :data:`COMMANDS`, either the
arguments of one real invocation (run in-process with Typer's CliRunner on a small synthetic
store) or, for a long-running server, the existing test that starts it as a user does and
talks to it. A command added without an entry fails :func:`test_every_command_has_a_real_invocation`,
which says what to add. One more run goes through the installed console script in a real process.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from riskstrata.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def command_tree() -> dict[str, object]:
    """Leaf commands by their full name (``"ingest prices"``), from the Typer/Click tree."""
    leaves: dict[str, object] = {}

    def walk(command: object, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None)  # a group (Typer ships its own Click: duck-type)
        if subs is None:
            leaves[" ".join(path)] = command
            return
        for name, sub in subs.items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return leaves


def groups() -> list[str]:
    """Every group's name ('' = the root), for their --help."""
    names: list[str] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None)
        if subs is not None:
            names.append(" ".join(path))
            for name, sub in subs.items():
                walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return names


# --------------------------------------------------------------------------------------------
# Inputs: one small synthetic market in a store (the demo's own path), and small files.

@dataclass
class Env:
    store: Path  # the demo store: Model A and Model B (US21) built, ETF holdings ingested
    ticker: str  # a stock with a model row on the last date
    files: Path  # small input files
    tmp: Path  # a fresh directory per invocation (stores written by ingest/build commands)
    holdings: Path  # a 3-name holdings CSV of the demo store's stocks

    def fresh_store(self) -> Path:
        return self.tmp / "store"


@dataclass(frozen=True)
class Covered:
    """A server command run by an existing test as a user runs it (start, requests, stop)."""

    test: str  # "tests/path.py::test_name"
    evidence: str  # text in that test module showing it starts this very command


def _small_files(files: Path) -> dict[str, Path]:
    """Small input files for the ingest commands, written the way users hold them."""
    from riskstrata.data.synthetic import synthetic_market

    files.mkdir(parents=True, exist_ok=True)
    market = synthetic_market(n_stocks=12, n_days=300, seed=8)
    out = {"prices": files / "prices.csv", "classifications": files / "gics.csv",
           "securities": files / "securities.csv", "etf_holdings": files / "etf_holdings.csv",
           "fundamentals": files / "fundamentals.csv", "13f": files / "infotable.xml",
           "cusips": files / "cusips.csv"}
    market.prices().pivot(index="date", columns="ticker", values="adj_close").to_csv(out["prices"])
    market.classifications[["ticker", "gics_sector", "gics_sub_industry"]].to_csv(out["classifications"], index=False)
    tickers = list(market.returns.columns[:3])
    pd.DataFrame({"ticker": tickers, "name": [f"{t} Inc" for t in tickers],
                  "figi": ["BBG000B9XRY4", "BBG000BPH459", "BBG000BBJQV0"]}).to_csv(out["securities"], index=False)
    pd.DataFrame({"date": "2024-06-28", "etf": "SPY", "holding": tickers, "weight": [0.5, 0.3, 0.2]}).to_csv(
        out["etf_holdings"], index=False)
    pd.DataFrame({"available_date": "2024-03-31", "ticker": tickers, "market_cap": [1e9, 2e9, 3e9],
                  "book_value_per_share": [10.0, 20.0, 5.0]}).to_csv(out["fundamentals"], index=False)
    out["13f"].write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<ns1:informationTable '
        'xmlns:ns1="http://www.sec.gov/edgar/document/thirteenf/informationtable">'
        + "".join(f"<ns1:infoTable><ns1:nameOfIssuer>{name}</ns1:nameOfIssuer><ns1:titleOfClass>COM"
                  f"</ns1:titleOfClass><ns1:cusip>{cusip}</ns1:cusip><ns1:value>{value}</ns1:value>"
                  f"<ns1:shrsOrPrnAmt><ns1:sshPrnamt>{shares}</ns1:sshPrnamt><ns1:sshPrnamtType>SH"
                  "</ns1:sshPrnamtType></ns1:shrsOrPrnAmt><ns1:investmentDiscretion>SOLE"
                  "</ns1:investmentDiscretion></ns1:infoTable>"
                  for name, cusip, value, shares in (("APPLE INC", "037833100", 1_700_000, 10_000),
                                                     ("MICROSOFT CORP", "594918104", 800_000, 2_000)))
        + "</ns1:informationTable>\n", encoding="utf-8")
    pd.DataFrame({"cusip": ["037833100", "594918104"], "ticker": ["AAPL", "MSFT"]}).to_csv(out["cusips"], index=False)
    return out


def _issuer_file(env: Env) -> Path:
    """A ticker → CIK file shaped like the SEC's company_tickers (share classes share a CIK)."""
    path = env.tmp / "company_tickers.csv"
    path.write_text("cik,ticker,name\n0001652044,GOOG,Alphabet Inc.\n0001652044,GOOGL,Alphabet Inc.\n")
    return path


def _build_store(env: Env) -> list[str]:
    """`build cascade` on a fresh store holding the small market's prices and classifications."""
    from riskstrata.data.ingest import ingest_classifications, ingest_prices
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import Store

    store = Store(env.fresh_store(), create=True)
    ingest_prices(store, [env.files / "prices.csv"], etf_tickers=set(EtfRegistry.default().etfs()))
    ingest_classifications(store, env.files / "gics.csv")
    return ["build", "cascade", "--window", "120", "--json", "--store", str(store.root)]


Args = Callable[[Env], list[str]]

# One real invocation per leaf command. Keep each one cheap: the whole module must stay well
# under 30 s on two busy cores. The demo store is shared, so an invocation that writes to it
# must leave it usable by the others (e.g. `factors build` publishes a new version of the same model).
COMMANDS: dict[str, Args | Covered] = {
    "demo": lambda env: ["demo", "--stocks", "40", "--years", "2", "--store", str(env.store)],  # run by the fixture
    "metrics": lambda env: ["metrics", env.ticker, "--json", "--store", str(env.store)],
    "decompose": lambda env: ["decompose", env.ticker, "--store", str(env.store)],
    "lstar": lambda env: ["lstar", env.ticker, "--threshold", "0.05", "--tail", "5", "--store", str(env.store)],
    "attribution": lambda env: ["attribution", env.ticker, "--start", "2016-01-01", "--end", "2016-12-30",
                                "--store", str(env.store)],
    "report": lambda env: ["report", env.ticker, "--out", str(env.tmp / "report.pdf"), "--store", str(env.store)],
    "serve": Covered("tests/web/test_pages.py::test_a_server_on_other_interfaces_refuses_pages_without_a_key",
                     "serve_cli("),
    "mcp": Covered("tests/mcp/test_mcp_server.py::test_transcript_of_a_conversation",
                   '"-m", "riskstrata.cli", "mcp"'),
    "ingest prices": lambda env: ["ingest", "prices", str(env.files / "prices.csv"), "--store", str(env.fresh_store())],
    "ingest classifications": lambda env: ["ingest", "classifications", str(env.files / "gics.csv"),
                                           "--store", str(env.fresh_store())],
    "ingest securities": lambda env: ["ingest", "securities", str(env.files / "securities.csv"),
                                      "--store", str(env.fresh_store())],
    "ingest issuers": lambda env: ["ingest", "issuers", str(_issuer_file(env)), "--store", str(env.fresh_store())],
    "ingest etf-holdings": lambda env: ["ingest", "etf-holdings", str(env.files / "etf_holdings.csv"),
                                        "--store", str(env.fresh_store())],
    "ingest fundamentals": lambda env: ["ingest", "fundamentals", str(env.files / "fundamentals.csv"),
                                        "--store", str(env.fresh_store())],
    "build cascade": _build_store,
    "update": lambda env: ["update", "--json", "--store", str(env.store)],  # no new day: a no-op; appending: tests/services/test_update.py
    "portfolio analyze": lambda env: ["portfolio", "analyze", str(env.holdings), "--store", str(env.store)],
    "portfolio hedge": lambda env: ["portfolio", "hedge", str(env.holdings), "--level", "L2", "--store", str(env.store)],
    "portfolio scale": lambda env: ["portfolio", "scale", str(env.holdings), "--json", "--store", str(env.store)],
    "portfolio lookthrough": lambda env: ["portfolio", "lookthrough", str(env.holdings), "--benchmark", "SPY",
                                          "--store", str(env.store)],
    "portfolio import-13f": lambda env: ["portfolio", "import-13f", str(env.files / "infotable.xml"), "--cusip-map",
                                         str(env.files / "cusips.csv"), "--out", str(env.tmp / "h.csv")],
    "factors models": lambda env: ["factors", "models", "--store", str(env.store)],
    "factors build": lambda env: ["factors", "build", "--json", "--store", str(env.store)],
    "factors summary": lambda env: ["factors", "summary", "--store", str(env.store)],
    "factors correlation": lambda env: ["factors", "correlation", "--window", "120", "--store", str(env.store)],
    "factors exposures": lambda env: ["factors", "exposures", env.ticker, "--store", str(env.store)],
    "factors risk": lambda env: ["factors", "risk", str(env.holdings), "--json", "--store", str(env.store)],
    "factors validate": lambda env: ["factors", "validate", "--store", str(env.store)],
    "store info": lambda env: ["store", "info", "--store", str(env.store)],
    "store prune": lambda env: ["store", "prune", "--keep", "2", "--store", str(env.store)],
    "keys create": lambda env: ["keys", "create", "every-command", "--replace", "--store", str(env.store)],
    "keys revoke": lambda env: ["keys", "revoke", "every-command", "--store", str(env.store)],
    "keys list": lambda env: ["keys", "list", "--store", str(env.store)],
    "research lstar-study": lambda env: ["research", "lstar-study", "--n-boot", "50", "--json",
                                         "--store", str(env.store)],
}


def invoke(args: list[str]):
    """Run the CLI in-process; expected errors are raised, not printed, so nothing is hidden."""
    env = {"COLUMNS": "200", "RISKSTRATA_DEBUG": None}
    return runner.invoke(app, args, env=env, catch_exceptions=True)


def assert_ran(result, args: list[str]) -> None:
    assert result.exit_code == 0 and result.exception is None, (
        f"`riskstrata {' '.join(args)}` exited {result.exit_code}: {result.exception!r}\n{result.output[-2000:]}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """The demo run through the CLI itself (its real invocation), plus ETF holdings and small files."""
    from riskstrata.data.etf_holdings import ingest_etf_holdings
    from riskstrata.data.store import Store

    base = tmp_path_factory.mktemp("every_command")
    e = Env(store=base / "store", ticker="", files=base / "files", tmp=base, holdings=base / "holdings.csv")
    args = COMMANDS["demo"](e)
    result = invoke(args)
    assert_ran(result, args)
    assert "identities" in result.output
    store = Store(e.store)
    rows = store.read_model("cascade", columns=["date", "ticker", "l3_mkt_hr"])
    last = rows[(rows["date"] == rows["date"].max()) & rows["l3_mkt_hr"].notna()]
    names = sorted(last["ticker"].astype(str))
    e.ticker = names[0]
    pd.DataFrame({"ticker": names[:3], "weight": [0.5, 0.3, 0.2]}).to_csv(e.holdings, index=False)
    _small_files(e.files)
    spy = e.files / "spy_holdings.csv"
    pd.DataFrame({"date": str(last["date"].max().date()), "etf": "SPY", "holding": names[:10],
                  "weight": 0.1}).to_csv(spy, index=False)
    ingest_etf_holdings(store, spy)
    return e


def test_every_command_has_a_real_invocation() -> None:
    tree = set(command_tree())
    missing = sorted(tree - set(COMMANDS))
    assert not missing, (
        f"commands without a real invocation in tests/cli/test_every_command.py: {missing}. Add an entry to "
        "COMMANDS there: the arguments of one real run on the test store (lambda env: [...]), or, for a "
        "long-running server, Covered('tests/…::test_name', 'text in that module that starts it').")
    stale = sorted(set(COMMANDS) - tree)
    assert not stale, f"COMMANDS in tests/cli/test_every_command.py names commands that no longer exist: {stale}"


@pytest.mark.parametrize("name", groups() + sorted(command_tree()), ids=lambda n: n or "riskstrata")
def test_help(name: str) -> None:
    args = [*name.split(), "--help"]
    result = invoke(args)
    assert_ran(result, args)
    assert "Usage" in result.output and "--help" in result.output


@pytest.mark.parametrize("name", [n for n, v in COMMANDS.items() if not isinstance(v, Covered) and n != "demo"])
def test_real_invocation(name: str, env: Env, tmp_path: Path) -> None:
    entry = COMMANDS[name]
    assert callable(entry)
    env.tmp = tmp_path
    args = entry(env)
    assert args[:len(name.split())] == name.split(), f"the entry for {name!r} runs another command: {args}"
    result = invoke(args)
    assert_ran(result, args)
    assert result.output.strip(), f"`riskstrata {' '.join(args)}` printed nothing"
    if "--json" in args:
        json.loads(result.output)
    if "--out" in args:
        written = Path(args[args.index("--out") + 1])
        assert written.exists() and written.stat().st_size > 0


@pytest.mark.parametrize("name", [n for n, v in COMMANDS.items() if isinstance(v, Covered)])
def test_servers_are_run_by_a_named_test(name: str) -> None:
    covered = COMMANDS[name]
    assert isinstance(covered, Covered)
    path, test = covered.test.split("::")
    source = (ROOT / path).read_text(encoding="utf-8")
    defined = {node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}
    assert test in defined, f"{covered.test}, named as the run of `riskstrata {name}`, does not exist"
    assert covered.evidence in source, f"{path} no longer starts `riskstrata {name}` ({covered.evidence!r})"


def test_the_console_script_runs_in_a_real_process(env: Env) -> None:
    script = Path(sys.executable).with_name("riskstrata")
    assert script.exists(), f"the console script is not installed next to {sys.executable}"
    environ = {k: v for k, v in os.environ.items() if k != "RISKSTRATA_DEBUG"}
    proc = subprocess.run([str(script), "metrics", env.ticker, "--json", "--store", str(env.store)],
                          capture_output=True, text=True, timeout=120, env=environ)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ticker"] == env.ticker
