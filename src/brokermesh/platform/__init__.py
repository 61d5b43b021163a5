"""The local development platform: PostgreSQL, NATS JetStream and every service on one machine.

This is a development platform, not a deployment: PostgreSQL trusts every
connection from the loopback interface and NATS runs without authentication.
On Kubernetes the same services use CloudNativePG clusters (credentials from
its generated secrets) and a NATS cluster deployed by its Helm chart.
"""

from __future__ import annotations


class PlatformError(RuntimeError):
    """A platform component could not be started, stopped, migrated or reached."""
