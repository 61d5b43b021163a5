"""Tests of the FIX 4.4 codecs and the QuickFIX asyncio bridge."""
