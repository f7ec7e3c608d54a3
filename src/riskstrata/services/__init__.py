"""Services: store-backed operations shared by the CLI and the REST API."""
