"""Tests of the pre-trade risk service: CEL policies, holds and the running process."""
