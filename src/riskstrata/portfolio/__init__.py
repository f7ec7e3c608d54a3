"""The portfolio layer: holdings in (files, frames, dicts, SEC 13F), matching to the model universe,
and the analyses built on the matched positions. Holdings live in memory only: nothing here writes
or logs them."""
