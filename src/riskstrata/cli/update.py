"""`riskstrata update`: append the store's newest trading days to the built models (no rebuild)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from riskstrata.cli.common import JsonOpt, StoreOpt, open_store, out, print_json, progress_bar


def register(app: typer.Typer) -> None:
    app.command("update")(update)


def update(
    store: StoreOpt = None,
    registry: Annotated[Optional[Path], typer.Option(
        help="The ETF registry CSV the cascade was built with, if not the packaged one.")] = None,
    allow_gap: Annotated[bool, typer.Option(
        "--allow-gap", help="Append even after a week or more without prices (as a rebuild would).")] = False,
    check_inferred: Annotated[bool, typer.Option(
        "--check-inferred", help="Re-run the inference of ETFs for unclassified securities on the whole history "
                                 "(as a rebuild would) and refuse if any would change (slower).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Append the newest day(s) to Model A from its trailing window and publish a new version.

    Equal to a full rebuild of the same data; refuses (with the reason and the command to run)
    when only a rebuild is right. No new day: nothing is published. Then each built Model B spec,
    the same way (new dates' exposures only; a version only a rebuild can bring up to date says why).
    """
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.services.update import update as run_update

    etf_registry = EtfRegistry.from_csv(registry) if registry else None
    with progress_bar() as bar:
        task = bar.add_task("update", total=None)
        summaries = run_update(open_store(store), registry=etf_registry, allow_gap=allow_gap,
                               check_inferred=check_inferred,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        print_json([s.__dict__ for s in summaries])
        return
    for s in summaries:
        out.print(s.message + (f" in {s.seconds:.2f}s" if s.status == "updated" else ""), highlight=False)
        for note in s.notes:
            out.print(f"  note: {note}", highlight=False)
