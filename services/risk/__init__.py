"""Pre-trade risk: deterministic limits every order passes before it may route."""
