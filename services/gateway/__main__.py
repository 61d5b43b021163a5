"""Entry point: ``python -m brokermesh.services.gateway``."""

from brokermesh.mesh.config import load
from brokermesh.services.gateway.runner import run
from brokermesh.services.gateway.settings import GatewaySettings

if __name__ == "__main__":
    run(load(GatewaySettings, "gateway"))
