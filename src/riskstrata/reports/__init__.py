"""Reports: the canonical JSON snapshot of a ticker or a portfolio, and its one-page PDF.

:mod:`riskstrata.reports.snapshot` gathers the numbers from the services (no math of its own);
:mod:`riskstrata.reports.pdf` draws them. The REST API, the CLI (``riskstrata report``) and the
client's ``snapshot`` / ``post_portfolio_risk_snapshot_pdf`` / ``get_metrics_snapshot_pdf`` all
use these two functions, so every face shows the same numbers.
"""
