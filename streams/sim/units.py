"""Prices the simulators charge beyond the provider catalogue's."""

TOKEN_PRICE_USD = 0.000002
"""Per LLM token, recorded with ``record_cost(..., kind="llm_tokens")``."""
