"""One package per brokermesh service; each runs as ``python -m brokermesh.services.<name>``."""
