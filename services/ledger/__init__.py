"""Ledger: publishes committed events to NATS, projects the order view and serves queries."""
