"""The shared runtime every brokermesh service is built on."""
