"""The daily update over REST: ``POST /api/update`` runs :func:`riskstrata.services.update.update`
as a background job (one at a time per store, like a build), polled at ``GET /api/jobs/{id}``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from riskstrata.api.errors import ApiError
from riskstrata.api.jobs import JobConflict, StoreClaim
from riskstrata.api.ours_factors import Jobs, State, _accepted

router = APIRouter(tags=["update"])

UPDATE_KEY = "update"


@router.post("/update", status_code=202, summary="Append the newest days to the built models (background job)",
             responses={202: {"description": "The update job; its result lists what each model did."},
                        409: {"description": "An update or a cascade build is already running; the body's job_id "
                                             "is the running job."}})
def start_update(state: State, jobs: Jobs) -> JSONResponse:
    """Model A: the store's days after its last date, from the trailing window, published as a new
    version (no new day: nothing published). Model B: a message naming the command to run. The job's
    ``result`` is one entry per model (``status``: updated | up to date | not built | not incremental)."""
    from riskstrata.services.cascade import MODEL
    from riskstrata.services.update import update

    def work(progress):
        summaries = update(state.store, progress=lambda done, total: progress(f"securities {done}/{total}"))
        return [s.__dict__ for s in summaries]

    try:
        job = jobs.start_exclusive("update", UPDATE_KEY, work, claim=StoreClaim(state.store, MODEL))
    except JobConflict as exc:
        raise ApiError(409, "Conflict", f"{exc}; poll /api/jobs/{exc.job_id}", extra={"job_id": exc.job_id}) from None
    return _accepted(job, "update started")
