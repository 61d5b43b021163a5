"""Tests of the pre-trade risk service: CEL policies and the running process."""
