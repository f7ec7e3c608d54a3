"""SEC Form 13F information tables (XML) read into :class:`~riskstrata.portfolio.holdings.Holdings`.

One holdings line per ``<infoTable>`` entry, in file order: ``line`` is the entry's 1-based
position, ``cusip`` as filed, ``shares`` the ``sshPrnamt`` of share (SH) entries, ``market_value``
the filed ``value`` in USD × ``value_multiplier``, ``currency`` USD, ``kind`` 'security'. Tickers
come from a CUSIP map; unmapped CUSIPs keep ticker None and are excluded later as unknown symbols.
Entries are never merged: a manager files one CUSIP on several entries (other managers,
discretion), and those stay separate lines (noted); matching combines them by security.

Units: filings made from 2023-01-03 on report ``value`` in whole dollars, earlier ones in
thousands of dollars. The value is kept as filed × ``value_multiplier`` (default 1) and the notes
say so, with the median implied price per share as a check.

Accepted input: a bare information-table XML (leading blank lines, as in some EDGAR files, are
stripped; any namespace prefix) or a full submission text (``.txt``/``.nc``) that embeds one.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError
from riskstrata.portfolio.holdings import HOLDING_COLUMNS, Holdings, map_cusips

__all__ = ["read_13f"]

_TABLE = re.compile(rb"<(?:[\w.-]+:)?informationTable\b.*?</(?:[\w.-]+:)?informationTable\s*>", re.DOTALL)


def read_13f(
    path: str | os.PathLike[str],
    cusip_map: str | os.PathLike[str] | pd.DataFrame | None = None,
    *,
    value_multiplier: float = 1.0,
) -> Holdings:
    """Read a 13F information table; join tickers through ``cusip_map`` (columns cusip, ticker).

    ``value_multiplier``: 1 for filings from 2023 on (values in USD), 1000 for older ones (values
    in thousands of USD). PRN entries (principal amounts of debt) get no share count and keep their
    market value; option entries (putCall) are noted: 13F reports them as the underlying's shares
    and value, so they read as a position in the underlying.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"13F file not found: {path}")
    entries = _entries(path.read_bytes(), path.name)
    lines, notes = _lines(entries, value_multiplier)
    holdings = Holdings(lines=lines, source=path.name, notes=notes)
    if cusip_map is None:
        holdings.notes.append("no CUSIP map given: lines have no ticker (pass cusip_map, a file or frame with "
                              "columns cusip, ticker)")
        return holdings
    return map_cusips(holdings, cusip_map)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _entries(data: bytes, name: str) -> list[dict[str, str]]:
    """The text of each infoTable entry's leaf elements, keyed by local tag name."""
    found = _TABLE.search(data.lstrip(b"\xef\xbb\xbf \t\r\n"))
    if found is None:
        raise DataValidationError(f"{name}: no 13F information table (<informationTable>) found")
    try:
        root = ET.fromstring(found.group(0))
    except ET.ParseError as exc:
        raise DataValidationError(f"{name}: the 13F information table is not well-formed XML: {exc}") from None
    entries = []
    for table in (el for el in root.iter() if _local(el.tag) == "infoTable"):
        fields: dict[str, str] = {}
        for el in table.iter():
            if len(el) == 0 and el.text is not None:
                fields.setdefault(_local(el.tag), el.text.strip())
        entries.append(fields)
    if not entries:
        raise DataValidationError(f"{name}: the 13F information table has no <infoTable> entries")
    return entries


def _float(text: str | None) -> float:
    try:
        return float(text.replace(",", "")) if text else math.nan
    except ValueError:
        return math.nan


def _lines(entries: list[dict[str, str]], multiplier: float) -> tuple[pd.DataFrame, list[str]]:
    records = []
    prn, options = 0, {"PUT": 0, "CALL": 0}
    for n, e in enumerate(entries, start=1):
        amount = _float(e.get("sshPrnamt"))
        amount_type = (e.get("sshPrnamtType") or "SH").upper()
        put_call = (e.get("putCall") or "").upper()
        note = []
        if amount_type == "PRN":
            prn += 1
            note.append(f"PRN: principal amount ${amount:,.0f} of a debt security, not shares; "
                        "valued at the filed value")
        if put_call in options:
            options[put_call] += 1
            note.append(f"{put_call} option on {amount:,.0f} shares: read as the underlying's shares and value, "
                        "as filed")
        issuer = " ".join(filter(None, [e.get("nameOfIssuer"), e.get("titleOfClass")]))
        if issuer:
            note.append(issuer)
        cusip = (e.get("cusip") or "").upper() or None
        records.append({
            "line": n, "ticker": None, "cusip": cusip,
            "shares": amount if amount_type == "SH" else math.nan,
            "market_value": _float(e.get("value")) * multiplier, "weight": math.nan,
            "currency": "USD", "kind": "security", "note": "; ".join(note),
        })
    lines = pd.DataFrame.from_records(records, columns=HOLDING_COLUMNS).astype(
        {"line": "int64", "shares": "float64", "market_value": "float64", "weight": "float64",
         "ticker": object, "cusip": object, "currency": object, "kind": object, "note": object})
    lines["ticker"] = None
    return lines, _notes(lines, multiplier, prn, options)


def _notes(lines: pd.DataFrame, multiplier: float, prn: int, options: dict[str, int]) -> list[str]:
    notes = [f"{len(lines)} information-table entries read; the issuer name and class are in each line's note"]
    implied = (lines["market_value"] / lines["shares"]).replace([np.inf, -np.inf], np.nan).dropna()
    price = float(implied.median()) if len(implied) else math.nan
    unit = "USD" if multiplier == 1 else f"USD × {multiplier:g}"
    check = f"; median implied price ${price:,.2f} per share" if math.isfinite(price) else ""
    notes.append(f"13F value read as {unit} (filings from 2023 on report dollars, earlier ones thousands of "
                 f"dollars: pass value_multiplier=1000 for those){check}")
    if math.isfinite(price) and price < 1.0 and multiplier == 1:
        notes.append("the implied prices are below $1 per share: the values look like thousands of USD "
                     "(value_multiplier=1000)")
    if prn:
        notes.append(f"{prn} PRN entries (principal amounts of debt) have no share count and keep the filed value")
    if sum(options.values()):
        notes.append(f"{options['PUT']} put and {options['CALL']} call option entries are read as positions in the "
                     "underlying (13F files the underlying's shares and value); a put is economically short")
    repeated = lines["cusip"].dropna()
    repeated = repeated[repeated.duplicated(keep=False)]
    if len(repeated):
        notes.append(f"{repeated.nunique()} CUSIPs appear on several entries ({len(repeated)} lines; other managers "
                     "or discretion): kept as separate lines")
    return notes
