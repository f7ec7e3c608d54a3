"""One expensive store build per test run, shared by every pytest-xdist worker of that run.

``make test`` runs two workers, whole files each; a session fixture is built once per *worker*,
so the real S&P 500 store (~17 s CPU) was built twice per run. Here the first worker to ask
builds it under an exclusive lock into a directory of the run's temporary root (the parent of
every worker's own base directory); the others wait on the lock and then read the same files.
The directory is named by a digest of the build's name, its input files (path, size, mtime) and
the files of the ``riskstrata`` package as they were when this process started (the code the
worker has loaded, since the test modules import the package at collection), so a build never
serves inputs or code it was not made from, and a commit to ``src/`` during the run does not
make the second worker build again with the very code the first one used.

A fixture that writes into the store (API keys, publishes) must take a :func:`private_copy`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import riskstrata

COMPLETE = ".complete"  # written last: a directory without it is a build that died part-way


def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary root shared by this run's workers (each xdist worker's base directory is a
    child of it); the base directory itself in a run without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def code_digest() -> str:
    """SHA-256 of every file of the installed ``riskstrata`` package (paths and bytes: the code
    and its packaged data, such as the ETF registry and the factor specs; not the bytecode)."""
    package = Path(riskstrata.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# Taken when conftest.py imports this module, at the worker's start, beside the package itself.
CODE_AT_START = code_digest()


def inputs_digest(name: str, inputs: Iterable[Path]) -> str:
    """Digest of the build's name, each input file's path, size and mtime, and the code."""
    h = hashlib.sha256(name.encode())
    for path in inputs:
        st = path.stat()
        h.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    h.update(CODE_AT_START.encode())
    return h.hexdigest()[:16]


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (released when the file closes, even if the
    process dies, so a killed worker never leaves the others waiting forever)."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_build(tmp_path_factory: pytest.TempPathFactory, name: str, inputs: Iterable[Path],
                 build: Callable[[Path], None]) -> Path:
    """The directory where ``build(directory)`` ran once for this run, ``name`` and ``inputs``.

    ``build`` writes into the (empty) directory it is given and is called by one worker only; a
    directory left by a build that raised is emptied and built again by the next caller.
    Callers must only read what is inside; see :func:`private_copy`.
    """
    shared = run_root(tmp_path_factory) / "shared-builds"
    shared.mkdir(exist_ok=True)
    target = shared / f"{name}-{inputs_digest(name, inputs)}"
    with _exclusive(shared / f"{target.name}.lock"):
        if not (target / COMPLETE).exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            build(target)
            (target / COMPLETE).touch()
    return target


def _published_part(path: Path) -> bool:
    """True for a file of a published model version (``models/<model>/<version>/<file>``, the
    version directory not hidden): the store renames a version into place complete and never
    writes to its files again (a prune renames the directory away, then deletes it)."""
    parts = path.parts
    return len(parts) >= 4 and parts[-4] == "models" and not parts[-2].startswith(".")


def private_copy(source: Path, destination: Path) -> Path:
    """A copy of the shared ``source`` store directory at ``destination`` for a fixture that writes.

    The files of published model versions are hard-linked, not copied (the real store's are
    ~330 MB): the store never writes to them in place, so a write through the copy (a key, a
    new build, a prune) makes new files and leaves the shared ones as they were. Everything
    else (tables, pointers, secrets, locks) is copied, since those are replaced or opened for
    writing. A test that means to damage a model file in place must copy it first."""
    def copy(src: str, dst: str) -> str:
        if _published_part(Path(src)):
            try:
                os.link(src, dst)
                return dst
            except OSError:  # another file system, or one without hard links: copy it after all
                pass
        return shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=copy)
    return destination
