"""How one API worker is configured: auth on/off, rate limits, request size and time, concurrency.

``riskstrata serve`` passes its options to the workers through the environment (uvicorn
starts each worker with ``create_app()`` and no arguments), so every setting has a
``RISKSTRATA_*`` variable; tests and notebooks pass :class:`ApiSettings` to ``create_app``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from riskstrata.errors import DataValidationError

# Generous enough that a load test of a few hundred concurrent requests from one key passes;
# tight enough that a runaway loop gets 429s instead of starving everyone else.
DEFAULT_RATE = 50.0           # requests per second per key, per worker (token refill rate)
DEFAULT_BURST = 200           # bucket size: requests a key may send at once
DEFAULT_MAX_BODY = 1 << 20    # 1 MiB: a 20,000-line holdings file is ~1 MB of JSON
# Wrong keys per client address: enough for a person fixing a typo, far too few to guess with.
DEFAULT_AUTH_FAIL_RATE = 1.0  # failed authentications/s refilled per client address, per worker
DEFAULT_AUTH_FAIL_BURST = 20
DEFAULT_BODY_TIMEOUT = 30.0   # seconds for a whole request body to arrive (1 MiB at ~35 kB/s)
DEFAULT_MAX_INFLIGHT = 64     # requests of one key in flight at once, per worker (bodies ≤ 64 MiB)
DEFAULT_HEAVY_SLOTS = 2       # heavy requests running at once per worker (≈ cores; the GIL does the rest)
DEFAULT_HEAVY_PER_KEY = 1     # of which one key may hold: one flooding key leaves the others a slot

ENV = {
    "auth_required": "RISKSTRATA_AUTH",
    "rate_limit": "RISKSTRATA_RATE_LIMIT",
    "rate_burst": "RISKSTRATA_RATE_BURST",
    "max_body_bytes": "RISKSTRATA_MAX_BODY_BYTES",
    "auth_fail_rate": "RISKSTRATA_AUTH_FAIL_RATE",
    "auth_fail_burst": "RISKSTRATA_AUTH_FAIL_BURST",
    "body_timeout": "RISKSTRATA_BODY_TIMEOUT",
    "max_inflight_per_key": "RISKSTRATA_MAX_INFLIGHT_PER_KEY",
    "heavy_slots": "RISKSTRATA_HEAVY_SLOTS",
    "heavy_per_key": "RISKSTRATA_HEAVY_PER_KEY",
}
_FALSE = {"0", "false", "no", "off"}
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ApiSettings:
    """Settings of one worker.

    auth_required:  require an API key on every route but the public ones (/health, /tickers).
    rate_limit:     token-bucket refill, requests/second per key per worker; 0 turns limiting off.
    rate_burst:     bucket size (requests a key may send back to back).
    max_body_bytes: largest request body accepted (413 above it).
    auth_fail_rate: failed authentications/s per client address (token refill; 429 once spent; 0 = off).
    auth_fail_burst: failed authentications a client address may make back to back.
    body_timeout:   seconds for a request body to arrive (408 after).
    max_inflight_per_key: requests of one key (or client, without auth) in flight at once; 0 = no bound.
    heavy_slots:    heavy requests (history, portfolios, factor models) running at once; 0 = no gate.
    heavy_per_key:  heavy requests one key may have running at once (the rest of its wait in line).
    """

    auth_required: bool = True
    rate_limit: float = DEFAULT_RATE
    rate_burst: int = DEFAULT_BURST
    max_body_bytes: int = DEFAULT_MAX_BODY
    auth_fail_rate: float = DEFAULT_AUTH_FAIL_RATE
    auth_fail_burst: int = DEFAULT_AUTH_FAIL_BURST
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_inflight_per_key: int = DEFAULT_MAX_INFLIGHT
    heavy_slots: int = DEFAULT_HEAVY_SLOTS
    heavy_per_key: int = DEFAULT_HEAVY_PER_KEY

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_limit) and self.rate_limit >= 0):
            raise DataValidationError(f"rate limit must be a number ≥ 0 (0 = off), got {self.rate_limit}")
        if self.rate_burst < 1:
            raise DataValidationError(f"rate burst must be ≥ 1, got {self.rate_burst}")
        if self.max_body_bytes < 1:
            raise DataValidationError(f"max body size must be ≥ 1 byte, got {self.max_body_bytes}")
        if not (math.isfinite(self.auth_fail_rate) and self.auth_fail_rate >= 0) or self.auth_fail_burst < 1:
            raise DataValidationError(f"failed-auth limit must be a rate ≥ 0 and a burst ≥ 1, got "
                                      f"{self.auth_fail_rate}, {self.auth_fail_burst}")
        if not (math.isfinite(self.body_timeout) and self.body_timeout > 0):
            raise DataValidationError(f"body timeout must be > 0 seconds, got {self.body_timeout}")
        if min(self.max_inflight_per_key, self.heavy_slots) < 0 or self.heavy_per_key < 1:
            raise DataValidationError("in-flight bound and heavy slots must be ≥ 0 (0 = off), heavy per key ≥ 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        """Defaults overridden by any ``RISKSTRATA_*`` variable that is set (see ``ENV``)."""
        environ = os.environ if environ is None else environ
        values: dict = {}
        for f in fields(cls):
            text = environ.get(ENV[f.name], "").strip()
            if not text:
                continue
            try:
                if f.type in (bool, "bool"):
                    if text.lower() not in _TRUE | _FALSE:
                        raise ValueError(text)
                    values[f.name] = text.lower() in _TRUE
                elif f.type in (int, "int"):
                    values[f.name] = int(text)
                else:
                    values[f.name] = float(text)
            except ValueError:
                raise DataValidationError(f"{ENV[f.name]}={text!r} is not a valid {f.type}") from None
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The variables that make :meth:`from_env` return these settings (for worker processes)."""
        return {ENV[f.name]: str(getattr(self, f.name)).lower() for f in fields(self)}

    def with_(self, **changes) -> ApiSettings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
