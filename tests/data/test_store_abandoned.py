"""The one rule for removing a build directory or a build claim (both stores, all four places)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from riskstrata.data.store import _UNOWNED_GRACE_SECONDS, STALE_BUILD_SECONDS, _abandoned


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_owner_on_this_host_is_abandoned_at_any_age() -> None:
    owner = {"host": socket.gethostname(), "pid": _dead_pid()}
    assert _abandoned(owner, 0.0) and _abandoned(owner, None)


def test_a_live_owner_or_one_on_another_host_waits_for_the_stale_age() -> None:
    for owner in ({"host": socket.gethostname(), "pid": os.getpid()}, {"host": "elsewhere.example", "pid": 1}):
        assert not _abandoned(owner, 0.0)
        assert not _abandoned(owner, None)
        assert not _abandoned(owner, STALE_BUILD_SECONDS - 1)
        assert _abandoned(owner, STALE_BUILD_SECONDS + 1)


def test_without_an_owner_record_a_minute_is_given_to_write_it() -> None:
    assert not _abandoned({}, _UNOWNED_GRACE_SECONDS - 1)
    assert _abandoned({}, _UNOWNED_GRACE_SECONDS + 1)
    assert not _abandoned({}, None)  # age unknown: only a dead owner counts


def test_an_unreadable_pid_on_this_host_counts_as_gone() -> None:
    assert _abandoned({"host": socket.gethostname(), "pid": "not a pid"}, 0.0)
