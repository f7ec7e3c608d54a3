"""`riskstrata store …`: what the store holds on disk, and pruning old model versions."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from riskstrata.cli.common import JsonOpt, StoreOpt, open_store, out, print_json

store_app = typer.Typer(no_args_is_help=True, help="Inspect the store's size and prune old model versions.")


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return str(n)


@store_app.command("info")
def info(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Tables and model versions with their sizes, which version is current and why each is kept."""
    data = open_store(store).info()
    if as_json:
        print_json(data)
        return
    out.print(f"store {data['root']}: {_size(data['bytes'])} in all; keeps {data['keep_versions']} versions per "
              f"model (+ current, pinned, leased, superseded < {data['grace_seconds'] // 60:.0f} min)", highlight=False)
    tables = Table(title="tables")
    tables.add_column("table")
    tables.add_column("size", justify="right")
    for t in data["tables"]:
        tables.add_row(t["table"], _size(t["bytes"]))
    out.print(tables)
    versions = Table(title="model versions")
    for col in ("model", "version", "size", "current", "kept because"):
        versions.add_column(col, justify="right" if col == "size" else "left")
    for m in data["models"]:
        for v in m["versions"]:
            versions.add_row(m["model"], v["version"], _size(v["bytes"]), "yes" if v["current"] else "", v["kept"])
        if m["building_or_leftover_bytes"]:
            versions.add_row(m["model"], "(builds in progress, leftovers)", _size(m["building_or_leftover_bytes"]), "", "")
    out.print(versions)


@store_app.command("prune")
def prune(store: StoreOpt = None,
          keep: Annotated[Optional[int], typer.Option(
              min=1, help="Versions to keep per model (default: RISKSTRATA_KEEP_VERSIONS, else 3).")] = None,
          grace: Annotated[float, typer.Option(
              min=0, help="Keep versions superseded less than this many seconds ago.")] = 600.0,
          as_json: JsonOpt = False) -> None:
    """Delete model versions beyond the newest KEEP per model (never the current one, one a running server holds, a companion a kept version names, or one superseded less than GRACE seconds ago). Runs after every publish too."""
    s = open_store(store)
    before = s.info()["bytes"]
    removed = s.prune_all(keep, grace_seconds=grace)
    freed = before - s.info()["bytes"]
    if as_json:
        print_json({"removed": removed, "bytes_freed": freed})
        return
    count = sum(len(v) for v in removed.values())
    out.print(f"removed {count} version{'s' if count != 1 else ''}, freed {_size(freed)}", highlight=False)
    for model, versions in removed.items():
        for version in versions:
            out.print(f"  {model} {version}", highlight=False)
