"""brokermesh: an open trading platform for broker-dealers and wealth managers.

Generated code imports its vendored dependency as ``buf.validate``; the
distribution installs that generated module as ``brokermesh._buf`` so that
nothing lands outside ``brokermesh.``, and importing this package makes it
reachable under the name the generated code expects.
"""

import importlib
import sys

for _name in ("buf", "buf.validate", "buf.validate.validate_pb2"):
    if _name not in sys.modules:
        try:
            sys.modules[_name] = importlib.import_module(f"brokermesh._{_name}")
        except ModuleNotFoundError:  # before the first `make gen`
            break
