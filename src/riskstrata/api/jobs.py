"""Background jobs of one worker: a small in-memory registry of builds run on threads.

Jobs are per worker process. With ``uvicorn --workers N`` each worker has its own registry,
so ``GET /api/jobs/{id}`` finds a job only on the worker that started it; the build itself is
visible to every worker once published, because it lands in the shared store
(``GET /api/factors/models`` reports ``built`` from the store). :meth:`JobRegistry.start_exclusive`
runs one build per model at a time across workers: a :class:`StoreClaim` (a claim file in the
store, taken over when its process died) refuses a second one with :class:`JobConflict`, which
carries the running job's id (the route answers 409).

A job's error is the message of a riskstrata error (the user's data or input); anything else
is reported as "unexpected <Type>" — tracebacks stay in the server log, never on the wire.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from riskstrata.data.store import Store
from riskstrata.errors import RiskstrataError

log = logging.getLogger("riskstrata.api.jobs")

KEEP_FINISHED = 200  # finished jobs remembered per worker; older ones are forgotten first
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

Progress = Callable[[str], None]


class JobConflict(RiskstrataError):
    """A job for this key is already running; ``job_id`` is its id (maybe in another worker)."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


@dataclass
class StoreClaim:
    """The store-wide right to build one model, shared by every worker on the store."""

    store: Store
    model: str  # the store's model name (``factors_US21``)

    def acquire(self, job_id: str) -> str | None:
        """None when claimed for ``job_id``, else the job id of the build holding the claim."""
        return self.store.claim_build(self.model, job_id)

    def release(self, job_id: str) -> None:
        self.store.release_build(self.model, job_id)


@dataclass
class Job:
    """One background task. Times are UNIX seconds; ``stages`` is the history of ``stage``."""

    id: str
    kind: str
    key: str                       # what it works on (a model name): one live job per key
    status: str = QUEUED
    stage: str | None = None
    stages: list[dict] = field(default_factory=list)
    error: str | None = None
    result: Any = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    @property
    def live(self) -> bool:
        return self.status in (QUEUED, RUNNING)


class JobRegistry:
    """Start work on a daemon thread, dedupe by key, and let readers see its progress."""

    def __init__(self, keep_finished: int = KEEP_FINISHED) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._latest: dict[str, str] = {}   # key → id of its most recent job
        self._lock = threading.Lock()
        self._keep = keep_finished
        self._serial = itertools.count(1)

    def start(self, kind: str, key: str, work: Callable[[Progress], Any]) -> tuple[Job, bool]:
        """Run ``work(progress)`` in the background unless a job for ``key`` is already live.

        Returns (the job, whether this call started it).
        """
        with self._lock:
            current = self.latest(key)
            if current is not None and current.live:
                return current, False
            job = Job(id=f"{kind}-{next(self._serial)}-{uuid.uuid4().hex[:12]}", kind=kind, key=key)
            self._jobs[job.id] = job
            self._latest[key] = job.id
            self._prune()
        threading.Thread(target=self._run, args=(job, work), name=f"riskstrata-{job.id}", daemon=True).start()
        return job, True

    def start_exclusive(self, kind: str, key: str, work: Callable[[Progress], Any], *,
                        claim: StoreClaim | None = None) -> Job:
        """Run ``work(progress)`` in the background; JobConflict (with the running job's id) when a
        job for ``key`` is live in this worker or, with ``claim``, holds the claim in any worker."""
        with self._lock:
            current = self.latest(key)
            if current is not None and current.live:
                raise JobConflict(f"a {kind} of {key} is already running: job {current.id}", current.id)
            job = Job(id=f"{kind}-{next(self._serial)}-{uuid.uuid4().hex[:12]}", kind=kind, key=key)
            holder = claim.acquire(job.id) if claim is not None else None
            if holder is not None:
                raise JobConflict(f"a {kind} of {key} is already running in another worker: job {holder}", holder)
            self._jobs[job.id] = job
            self._latest[key] = job.id
            self._prune()
        release = (lambda: claim.release(job.id)) if claim is not None else None
        threading.Thread(target=self._run, args=(job, work, release), name=f"riskstrata-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def latest(self, key: str) -> Job | None:
        """The most recent job for ``key`` (live or finished), if this worker remembers one."""
        job_id = self._latest.get(key)
        return self._jobs.get(job_id) if job_id else None

    def _run(self, job: Job, work: Callable[[Progress], Any], release: Callable[[], None] | None = None) -> None:
        def progress(stage: str) -> None:
            job.stage = stage
            job.stages.append({"stage": stage, "at": time.time()})

        job.status, job.started = RUNNING, time.time()
        status, error, result = FAILED, None, None
        try:
            result, status = work(progress), DONE
        except RiskstrataError as exc:
            error = str(exc)
        except Exception as exc:  # a worker thread records the failure instead of dying silently
            log.exception("job %s failed", job.id)
            error = f"unexpected {type(exc).__name__}"
        finally:
            if release is not None:  # before the job reads as finished: a retry then finds the claim free
                try:
                    release()
                except OSError:
                    log.exception("job %s could not release its build claim", job.id)
            job.result, job.error, job.finished = result, error, time.time()
            job.status = status

    def _prune(self) -> None:
        finished = [j.id for j in self._jobs.values() if not j.live]
        for job_id in finished[: max(0, len(finished) - self._keep)]:
            job = self._jobs.pop(job_id)
            if self._latest.get(job.key) == job_id:
                del self._latest[job.key]


_ATTACH = threading.Lock()


def registry_of(app_state: Any) -> JobRegistry:
    """The app's registry, created on first use (one per app, so one per worker)."""
    registry = getattr(app_state, "riskstrata_jobs", None)
    if registry is None:
        with _ATTACH:
            registry = getattr(app_state, "riskstrata_jobs", None)
            if registry is None:
                registry = JobRegistry()
                app_state.riskstrata_jobs = registry
    return registry
