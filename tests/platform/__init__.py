"""Tests of the local platform: PostgreSQL, migrations, NATS JetStream, status and supervisor."""
