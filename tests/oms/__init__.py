"""Tests of the OMS validation service: checks, commitment ledger and the running process."""
