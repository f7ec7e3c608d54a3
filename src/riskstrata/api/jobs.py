"""Background jobs of one worker: a small in-memory registry of builds run on threads.

Jobs are per worker process. With ``uvicorn --workers N`` each worker has its own registry,
so ``GET /api/jobs/{id}`` finds a job only on the worker that started it; the build itself is
visible to every worker once published, because it lands in the shared store
(``GET /api/factors/models`` reports ``built`` from the store). Two workers asked to build the
same model at once may both build it; the store's versioned publish makes the last one current
and never mixes the two.

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

from riskstrata.errors import RiskstrataError

log = logging.getLogger("riskstrata.api.jobs")

KEEP_FINISHED = 200  # finished jobs remembered per worker; older ones are forgotten first
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

Progress = Callable[[str], None]


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

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def latest(self, key: str) -> Job | None:
        """The most recent job for ``key`` (live or finished), if this worker remembers one."""
        job_id = self._latest.get(key)
        return self._jobs.get(job_id) if job_id else None

    def _run(self, job: Job, work: Callable[[Progress], Any]) -> None:
        def progress(stage: str) -> None:
            job.stage = stage
            job.stages.append({"stage": stage, "at": time.time()})

        job.status, job.started = RUNNING, time.time()
        try:
            job.result = work(progress)
            job.status = DONE
        except RiskstrataError as exc:
            job.error, job.status = str(exc), FAILED
        except Exception as exc:  # a worker thread records the failure instead of dying silently
            log.exception("job %s failed", job.id)
            job.error, job.status = f"unexpected {type(exc).__name__}", FAILED
        finally:
            job.finished = time.time()

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
