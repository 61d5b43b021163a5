"""REST gateway: the HTTP/JSON edge derived from the contracts' google.api.http rules."""
