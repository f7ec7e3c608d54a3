"""A (T, N, K) array held as date blocks, in memory or spilled to ``.npy`` files.

The streamed Model B build (:func:`riskstrata.factors.model.fit_factor_model` with
``spill_dir``) never holds the exposures of every date at once: each date block is written to
disk as it is produced and read back, one block at a time, by the stages that need it again
(validation, publishing). :class:`BlockArray` gives those stages the indexing they use —
``x[t]`` (one date), ``x[rows]`` (a few dates), ``np.asarray(x)`` (everything, for small
models) — and :meth:`BlockArray.blocks` to walk the dates block by block.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np


class BlockArray:
    """A read-only (T, N, K) array stored as consecutive date blocks.

    bounds: [(a, b), …] consecutive row ranges covering 0 … T; paths: one ``.npy`` file per
    block holding rows a … b − 1 with all ``K_all`` stored columns; columns: the stored
    columns this view shows (K of them, in this order; None = all). Only the block last read is
    kept in memory.
    """

    def __init__(self, bounds: list[tuple[int, int]], paths: list[Path], shape_nk: tuple[int, int],
                 dtype: np.dtype, columns: np.ndarray | None = None) -> None:
        if len(bounds) != len(paths) or not bounds or bounds[0][0] != 0 or any(
                b0[1] != b1[0] for b0, b1 in zip(bounds, bounds[1:])):
            raise ValueError("bounds must be consecutive row ranges from 0, one path each")
        self.bounds = list(bounds)
        self.paths = [Path(p) for p in paths]
        self._starts = np.array([a for a, _ in bounds])
        self.columns = None if columns is None else np.asarray(columns, dtype=int)
        n, k_all = shape_nk
        self.k_all = k_all
        k = k_all if self.columns is None else len(self.columns)
        self.shape = (bounds[-1][1], n, k)
        self.dtype = np.dtype(dtype)
        self.ndim = 3
        self._cached: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def select(self, columns: np.ndarray) -> BlockArray:
        """The same blocks showing only ``columns`` (positions among the stored columns)."""
        cols = np.asarray(columns, dtype=int)
        if self.columns is not None:
            cols = self.columns[cols]
        return BlockArray(self.bounds, self.paths, (self.shape[1], self.k_all), self.dtype, cols)

    def block(self, i: int) -> np.ndarray:
        """Rows ``bounds[i]`` as a (b − a, N, K) array (the shown columns)."""
        if self._cached is not None and self._cached[0] == i:
            return self._cached[1]
        arr = np.load(self.paths[i])
        if self.columns is not None:
            arr = arr[:, :, self.columns]
        self._cached = (i, arr)
        return arr

    def blocks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """(a, b, rows a … b − 1) for each block in date order."""
        for i, (a, b) in enumerate(self.bounds):
            yield a, b, self.block(i)

    def _row(self, t: int) -> np.ndarray:
        t = int(t)
        if t < 0:
            t += self.shape[0]
        if not 0 <= t < self.shape[0]:
            raise IndexError(f"row {t} is outside 0 … {self.shape[0] - 1}")
        i = int(np.searchsorted(self._starts, t, side="right")) - 1
        return self.block(i)[t - self.bounds[i][0]]

    def __getitem__(self, key: object) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            out = self._row(key)
        else:
            rows = np.arange(self.shape[0])[key]  # a slice, an index array or a mask
            out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
            for j, t in enumerate(rows):
                out[j] = self._row(t)
        return out[rest] if rest else out

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        for a, b, arr in self.blocks():
            out[a:b] = arr
        return out if dtype is None else out.astype(dtype)
