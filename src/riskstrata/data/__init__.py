"""Data layer: the on-disk store, the point-in-time security master, and price/classification ingest.

- :mod:`riskstrata.data.store` — a directory of Parquet files queried with DuckDB; versioned model outputs.
- :mod:`riskstrata.data.master` — securities with stable ids and dated records (renames, recycled tickers).
- :mod:`riskstrata.data.readers` — reading CSV/Parquet price files into a long price frame.
- :mod:`riskstrata.data.report` — the ingest report: issue rows and their reason codes.
- :mod:`riskstrata.data.validation` — the validation rules, each with a reason code.
- :mod:`riskstrata.data.ingest` — price and classification ingest into the store; the returns matrix.
"""
