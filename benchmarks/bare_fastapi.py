"""The peer of bench_api.py: the plainest FastAPI app uvicorn can serve — one async route that
returns a constant JSON object, no middleware, no auth, no data. Its throughput on the same
machine, workers and load is the ceiling the framework leaves; riskstrata's routes are reported
as a share of it."""

from fastapi import FastAPI

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/bare")
async def bare() -> dict:
    return {"status": "ok"}
