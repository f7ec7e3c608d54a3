"""The server commands: ``riskstrata serve`` (the web dashboard and the REST API) and ``riskstrata keys``
(their API keys)."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from riskstrata.api.settings import (
    DEFAULT_AUTH_FAIL_BURST,
    DEFAULT_AUTH_FAIL_RATE,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_BURST,
    DEFAULT_HEAVY_PER_KEY,
    DEFAULT_HEAVY_SLOTS,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_INFLIGHT,
    DEFAULT_RATE,
)
from riskstrata.cli.common import JsonOpt, StoreOpt, err, open_store, out, print_json

keys_app = typer.Typer(no_args_is_help=True, help="API keys of the REST server (stored hashed in the store).")


def register(app: typer.Typer) -> None:
    """Attach ``serve`` and the ``keys`` group to the main app."""
    app.command()(serve)
    app.add_typer(keys_app, name="keys")


def _is_loopback(host: str) -> bool:
    from riskstrata.web.access import is_loopback

    return is_loopback(host)


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # a wildcard bind is reachable locally
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def serve(
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (each holds its own snapshot cache).")] = 1,
    auth: Annotated[bool, typer.Option("--auth/--no-auth",
                                       help="Require an API key (--no-auth: local notebooks only).")] = True,
    rate_limit: Annotated[float, typer.Option(min=0, help="Requests/s per key per worker (0 = no limit).")]
    = DEFAULT_RATE,
    rate_burst: Annotated[int, typer.Option(min=1, help="Requests a key may send at once.")] = DEFAULT_BURST,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body (413 above).")] = DEFAULT_MAX_BODY,
    body_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds for a request body to arrive (408 after).")]
    = DEFAULT_BODY_TIMEOUT,
    auth_fail_rate: Annotated[float, typer.Option(min=0, help="Failed authentications/s per client address "
                                                              "(429 once spent; 0 = no limit).")] = DEFAULT_AUTH_FAIL_RATE,
    auth_fail_burst: Annotated[int, typer.Option(min=1, help="Failed authentications an address may make at once.")]
    = DEFAULT_AUTH_FAIL_BURST,
    max_inflight_per_key: Annotated[int, typer.Option(min=0, help="Requests of one key in flight per worker "
                                                                  "(429 above; 0 = no bound).")] = DEFAULT_MAX_INFLIGHT,
    heavy_slots: Annotated[int, typer.Option(min=0, help="Heavy requests (history, portfolios) running at once per "
                                                         "worker (0 = no gate).")] = DEFAULT_HEAVY_SLOTS,
    heavy_per_key: Annotated[int, typer.Option(min=1, help="Of which one key may run at once.")] = DEFAULT_HEAVY_PER_KEY,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info or debug.")] = "info",
) -> None:
    """Serve the web dashboard (at /) and the REST API (OpenAPI at /api/openapi.json, docs at /api/docs) over a store."""
    import uvicorn

    from riskstrata.api.auth import KeyRing
    from riskstrata.api.logs import uvicorn_log_config
    from riskstrata.api.settings import ApiSettings

    opened = open_store(store, create=False)  # a typo in --store should not serve an empty new store
    settings = ApiSettings(auth_required=auth, rate_limit=rate_limit, rate_burst=rate_burst,
                           max_body_bytes=max_body_bytes, body_timeout=body_timeout, auth_fail_rate=auth_fail_rate,
                           auth_fail_burst=auth_fail_burst, max_inflight_per_key=max_inflight_per_key,
                           heavy_slots=heavy_slots, heavy_per_key=heavy_per_key)
    # Workers are separate processes that build the app with create_app(): they read these.
    os.environ.update(settings.to_env())
    os.environ["RISKSTRATA_STORE"] = str(opened.root.resolve()) if opened.is_local else opened.root  # a URL as given
    os.environ["RISKSTRATA_WEB_HOST"] = host  # the dashboard's pages are open only on a loopback interface

    url = _url(host, port)
    say = lambda text: err.print(text, highlight=False, soft_wrap=True)  # noqa: E731 - URLs must not wrap
    say(f"riskstrata dashboard on [bold]{url}/[/]"
        + ("" if not auth or _is_loopback(host) else "  (other machines can reach it: pages ask for an API key)"))
    say(f"riskstrata API on [bold]{url}/api[/]  (store {opened.root}, {workers} worker(s))")
    say(f"  docs:   {url}/api/docs   (OpenAPI: {url}/api/openapi.json)")
    say(f"  client: RISKMODELS_BASE_URL={url}/api")
    say(f"  agents: MCP over streamable HTTP at {url}/mcp (same API keys)")
    if not auth:
        say("  [yellow]warning:[/] --no-auth: every route answers without a key"
            + ("" if _is_loopback(host) else f", on {host}, to anyone who can reach it"))
    elif not KeyRing(opened).has_keys():
        say("  [yellow]warning:[/] no API keys yet: create one with `riskstrata keys create NAME`")
    uvicorn.run("riskstrata.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level.lower(), log_config=uvicorn_log_config(log_level),
                access_log=False,  # uvicorn's would print query strings; riskstrata.access logs paths only
                server_header=False)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for, e.g. notebook or ci.")],
    store: StoreOpt = None,
    replace: Annotated[bool, typer.Option("--replace", help="Revoke an active key of this name first.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print it once (stdout: the key alone, so `KEY=$(riskstrata keys create ci)` works)."""
    from riskstrata.api.auth import create_key, list_keys

    opened = open_store(store, create=False)
    key = create_key(opened, name, replace=replace)
    if as_json:
        info = next(k for k in reversed(list_keys(opened)) if k.name == name and k.active)
        print_json({"name": name, "key": key, "key_id": info.key_id, "created_at": info.created_at})
        return
    err.print(f"created API key [bold]{name}[/] (shown once: only its hash is stored). Send it as "
              "`Authorization: Bearer <key>` or `X-API-Key: <key>`:", highlight=False)
    print(key)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")], store: StoreOpt = None,
                as_json: JsonOpt = False) -> None:
    """Revoke every active key of this name (running servers stop accepting it at once)."""
    from riskstrata.api.auth import revoke_key

    count = revoke_key(open_store(store, create=False), name)
    if as_json:
        print_json({"name": name, "revoked": count})
    else:
        out.print(f"revoked {count} key(s) named {name}" if count else f"key {name} was already revoked")


@keys_app.command("list")
def keys_list(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Every key: name, id, created, revoked (never the key or its hash)."""
    from riskstrata.api.auth import list_keys

    keys = list_keys(open_store(store, create=False))
    if as_json:
        print_json([{"name": k.name, "key_id": k.key_id, "created_at": k.created_at, "revoked_at": k.revoked_at,
                     "active": k.active} for k in keys])
        return
    if not keys:
        out.print("no API keys: create one with `riskstrata keys create NAME`")
        return
    table = Table()
    for col in ("name", "key id", "created", "revoked"):
        table.add_column(col)
    for k in keys:
        table.add_row(k.name, f"rs_{k.key_id}_…", k.created_at, k.revoked_at or "—")
    out.print(table)
