"""Unit tests of the shared runtime, ``brokermesh.mesh``."""
