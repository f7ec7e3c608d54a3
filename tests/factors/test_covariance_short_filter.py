"""The covariance's EWMA recursion on a few rows (a daily update's) skips scipy.signal, bit for bit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import lfilter

from riskstrata.factors import covariance as cov


@pytest.mark.parametrize("shape", [(1, 5), (7, 3, 4), (cov._FEW_ROWS, 21), (30,), (cov._FEW_ROWS + 1, 3)])
@pytest.mark.parametrize("with_before", [False, True])
def test_the_recursion_equals_lfilter_bit_for_bit(shape: tuple[int, ...], with_before: bool) -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal(shape)
    z.flat[::7] = np.nan
    z.flat[3::11] = -0.0
    before = rng.standard_normal(shape[1:]) if with_before else None
    got = cov._ew_filter(z, 0.97, before)
    want = (lfilter([1.0], [1.0, -0.97], z, axis=0) if before is None
            else lfilter([1.0], [1.0, -0.97], z, axis=0, zi=0.97 * before[None])[0])
    assert got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True)
    real = ~np.isnan(want)  # signed zeros agree too (a NaN's sign bit is no number's)
    assert np.array_equal(np.signbit(got[real]), np.signbit(want[real]))


def test_a_few_rows_do_not_import_scipy_signal() -> None:
    code = ("import sys, numpy as np; from riskstrata.factors.covariance import _ew_filter; "
            "_ew_filter(np.ones((5, 3)), 0.9, np.ones(3)); print('scipy.signal' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("with_before", [False, True])
def test_one_long_series_equals_lfilter_bit_for_bit(with_before: bool) -> None:
    rng = np.random.default_rng(5)
    z = rng.standard_normal(3_000)
    z[::13] = np.nan
    z[5::17] = -0.0
    z[7] = np.inf
    z[2_000] = -np.inf
    z[2_500:] = (rng.random(500) < 0.5).astype(float)  # 0/1 rows, as the effective-observations count reads
    before = np.array(rng.standard_normal()) if with_before else None
    got = cov._ew_filter(z, 0.99, before)
    want = (lfilter([1.0], [1.0, -0.99], z) if before is None else lfilter([1.0], [1.0, -0.99], z, zi=0.99 * before[None])[0])
    assert np.array_equal(got, want, equal_nan=True)
    real = ~np.isnan(want)  # signed zeros agree too (a NaN's sign bit is no number's)
    assert np.array_equal(np.signbit(got[real]), np.signbit(want[real]))
