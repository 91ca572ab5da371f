"""Backends: the registry and accounting, active health checks and scraping, ejection."""
