"""Unit tests of the order domain, ``brokermesh.domain``."""
