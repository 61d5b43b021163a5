"""Simulated trading venues: seeded order books behind a QuickFIX acceptor."""
