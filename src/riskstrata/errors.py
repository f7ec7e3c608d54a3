"""The small set of exceptions riskstrata raises on purpose.

Faces map each type once: the CLI prints ``error: <message>`` and exits non-zero, the REST API
maps to an HTTP status. Anything else escaping to a user is a bug.
"""

from __future__ import annotations


class RiskstrataError(Exception):
    """Base class: a problem with the user's input or data, explained in the message."""

    exit_code: int = 2


class UnknownTicker(RiskstrataError):
    """A ticker (or security id) that the store or the model does not know on that date."""

    def __init__(self, ticker: str, detail: str = "") -> None:
        self.ticker = ticker
        msg = f"unknown ticker {ticker!r}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class InsufficientHistory(RiskstrataError):
    """Too few valid observations to estimate what was asked for."""


class DataValidationError(RiskstrataError):
    """An input file or frame that cannot be read as what it claims to be."""


class ValueOverflow(DataValidationError):
    """A quantity too large to compute with (|x| > 1e15, or sums that overflow float64): a 422."""


class DateOutOfRange(RiskstrataError):
    """A date outside the data or the built model."""


class StoreError(RiskstrataError):
    """The store is missing, empty for the request, or not a riskstrata store."""


class ModelNotBuilt(StoreError):
    """A model output was requested before any version of it was built."""


class IdentityViolation(RiskstrataError):
    """A model identity (shares sum to 1, replication) failed at build time: the build is refused."""

    exit_code = 3
