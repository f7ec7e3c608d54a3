"""The REST face: a FastAPI app over the same services as the CLI (wire-compatible with riskmodels-py)."""
