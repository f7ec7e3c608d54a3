"""`python -m riskstrata.cli`."""

from riskstrata.cli import main

main()
