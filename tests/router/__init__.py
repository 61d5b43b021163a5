"""Tests of the smart order router: venue ranking and the running process."""
