"""one_blas_thread: BLAS held to one thread inside the block and given back after it, on every
use of the process's one controller."""

from __future__ import annotations

import pytest

from riskstrata.factors.model import one_blas_thread

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]


def test_blas_runs_on_one_thread_inside_and_as_before_after_each_use():
    before = _blas_threads()
    if not before:
        pytest.skip("numpy reports no BLAS library to limit")
    for _ in range(3):  # the controller is reused: each block limits and restores again
        with one_blas_thread():
            assert _blas_threads() == [1] * len(before)
        assert _blas_threads() == before
