"""Tests of the venue gateway: the execution journal, its forwarder and order status queries."""
