"""Per-request records and their summaries."""

from fleetsched.metrics.io import read_records, read_records_csv, write_records
from fleetsched.metrics.records import RECORD_FIELDS, RecordTable, RequestRecord
from fleetsched.metrics.stats import (
    coefficient_of_variation,
    dist_summary,
    jain_index,
    percentiles,
)
from fleetsched.metrics.summary import summarize, summary_to_json
from fleetsched.metrics.table import compare_table, summary_table

__all__ = [
    "RECORD_FIELDS",
    "RecordTable",
    "RequestRecord",
    "coefficient_of_variation",
    "compare_table",
    "dist_summary",
    "jain_index",
    "percentiles",
    "read_records",
    "read_records_csv",
    "summarize",
    "summary_table",
    "summary_to_json",
    "write_records",
]
