"""Tenants: API keys, rate limits and the central queue."""
