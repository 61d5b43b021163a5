"""Tests of the simulated venues: books, market model, order handling and FIX link."""
