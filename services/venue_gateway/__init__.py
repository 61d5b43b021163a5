"""Venue gateway: the FIX 4.4 initiator linking the platform to its venues."""
