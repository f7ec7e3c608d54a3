"""How one API worker is configured: auth on/off, rate limit, request size.

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

ENV = {
    "auth_required": "RISKSTRATA_AUTH",
    "rate_limit": "RISKSTRATA_RATE_LIMIT",
    "rate_burst": "RISKSTRATA_RATE_BURST",
    "max_body_bytes": "RISKSTRATA_MAX_BODY_BYTES",
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
    """

    auth_required: bool = True
    rate_limit: float = DEFAULT_RATE
    rate_burst: int = DEFAULT_BURST
    max_body_bytes: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_limit) and self.rate_limit >= 0):
            raise DataValidationError(f"rate limit must be a number ≥ 0 (0 = off), got {self.rate_limit}")
        if self.rate_burst < 1:
            raise DataValidationError(f"rate burst must be ≥ 1, got {self.rate_burst}")
        if self.max_body_bytes < 1:
            raise DataValidationError(f"max body size must be ≥ 1 byte, got {self.max_body_bytes}")

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
