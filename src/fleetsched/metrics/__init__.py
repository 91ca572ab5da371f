"""Per-request records and their summaries."""

from fleetsched.metrics.records import RequestRecord

__all__ = ["RequestRecord"]
