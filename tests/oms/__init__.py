"""Tests of the OMS validation service: checks, provisional holds and the running process."""
