"""Fixtures of the browser tests: a small built store, a real ``riskstrata serve`` on a free
loopback port over it, and Debian's chromium driven by Playwright (pytest-playwright).

One server and one browser per session. The browser is the system's ``/usr/bin/chromium``
(never a Playwright download); where it is missing the tests skip with the reason (``make
test`` installs it with apt when run as root). Screenshots of every page go to the run's
output directory (``--output``, default ``test-results/``) and, with
``RISKSTRATA_SCREENSHOTS=docs/screenshots``, to that directory too (how the README's are made).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from riskstrata.api.auth import create_key
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services import factors
from riskstrata.services.cascade import build_cascade
from riskstrata.services.demo import load_synthetic_into_store
from tests.api.conftest import serve_cli

CHROMIUM = Path(os.environ.get("RISKSTRATA_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BUILT_SPEC, UNBUILT_SPEC = "US21", "US_CORE"
WIDTHS = {"desktop": 1280, "phone": 390}


@pytest.fixture(scope="session")
def web_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """40 synthetic stocks with styles and fundamentals over 400 days: the cascade and US21 built,
    US_CORE left unbuilt (the factor page builds it); an API key for the /api comparisons."""
    store = Store(tmp_path_factory.mktemp("web") / "store")
    load_synthetic_into_store(store, synthetic_market(n_stocks=40, n_days=400, seed=11, styles=True))
    build_cascade(store)
    factors.build_factor_model(store, BUILT_SPEC)
    return store


@pytest.fixture(scope="session")
def web_key(web_store: Store) -> str:
    return create_key(web_store, "web-tests")


@pytest.fixture(scope="session")
def base_url(web_store: Store, web_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of ``riskstrata serve`` over the store (loopback: pages open)."""
    log = tmp_path_factory.mktemp("web-server") / "serve.log"
    with serve_cli(web_store, log, "--rate-limit", "0") as api_url:
        yield api_url.removesuffix("/api")


@pytest.fixture(scope="session")
def api(base_url: str, web_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{base_url}/api", headers={"Authorization": f"Bearer {web_key}"}, timeout=60,
                      trust_env=False) as client:
        yield client


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """pytest-playwright launches Debian's chromium, headless, with nothing phoning home."""
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install chromium` (make test does it as root)")
    return {"executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS, "headless": True}


class Watched:
    """A page with its console errors, uncaught exceptions and every request's host recorded."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.hosts: set[str] = set()
        self.expect_404: set[str] = set()  # pages asked for on purpose that answer 404 (an unknown ticker)

        def console(m) -> None:
            if m.type == "error" and not (m.location.get("url") in self.expect_404 and "404" in m.text):
                self.errors.append(f"{m.text} ({m.location.get('url')})")
        page.on("console", console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.hosts.add(urlparse(r.url).hostname or r.url))

    def clean(self) -> None:
        """No console error and no request to a host other than 127.0.0.1."""
        assert not self.errors, self.errors
        assert self.hosts <= {"127.0.0.1"}, self.hosts


@pytest.fixture
def watched(browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": WIDTHS["desktop"], "height": 900})
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


@pytest.fixture(scope="session")
def shots(pytestconfig: pytest.Config) -> Iterator:
    """save(page, name): a full-page PNG in the run's output directory (and in
    $RISKSTRATA_SCREENSHOTS when set)."""
    out = Path(pytestconfig.getoption("--output", default="test-results")) / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    extra = os.environ.get("RISKSTRATA_SCREENSHOTS")

    def save(page, name: str) -> Path:
        path = out / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        return path
    yield save
