"""Tests of trade capture: execution reports into events, breaks and acknowledgements."""
