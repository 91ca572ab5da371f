"""trace_stats: hand-computed values, and speed on the Mooncake conversation trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fleetsched.core.request import Request, chain_hashes
from fleetsched.workload import load_trace, trace_stats

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


def test_stats_by_hand() -> None:
    a = chain_hashes([1, 2, 3])
    b = chain_hashes([1, 2, 9])  # shares 2 blocks with a
    reqs = [
        Request(
            id=0,
            arrival_s=1.0,
            prompt_tokens=50,
            output_tokens=10,
            block_hashes=a,
            tenant="x",
            session_id="s1",
        ),
        Request(
            id=1,
            arrival_s=3.0,
            prompt_tokens=60,
            output_tokens=20,
            block_hashes=b,
            tenant="y",
            session_id="s1",
            model="m",
        ),
        Request(id=2, arrival_s=5.0, prompt_tokens=10, output_tokens=30, tenant="x"),
    ]
    s = trace_stats(iter(reqs))
    assert s["rows"] == 3
    assert s["first_arrival_s"] == 1.0 and s["duration_s"] == 4.0 and s["mean_rate"] == 0.75
    assert s["prompt_tokens"]["mean"] == 40.0 and s["prompt_tokens"]["max"] == 60
    assert s["prompt_tokens"]["p50"] == 50.0 and s["prompt_tokens"]["total"] == 120
    assert s["output_tokens"]["p90"] == pytest.approx(np.percentile([10, 20, 30], 90))
    # 2 of b's blocks (16 tokens each) were seen in a: 32 / 120 prompt tokens.
    assert s["prefix_sharing_ratio"] == pytest.approx(32 / 120)
    assert s["hash_block_tokens"] == 16
    assert (s["tenants"], s["models"], s["sessions"]) == (2, 2, 1)


def test_stats_without_hashes_and_empty() -> None:
    s = trace_stats([Request(id=0, arrival_s=0.0, prompt_tokens=5, output_tokens=5)])
    assert s["prefix_sharing_ratio"] is None and s["mean_rate"] is None
    assert s["duration_s"] == 0.0
    assert trace_stats([]) == {"rows": 0}


@pytest.mark.skipif(not TRACES.is_dir(), reason="no public traces")
def test_mooncake_conversation_stats_consistent() -> None:
    path = TRACES / "mooncake_fast25" / "conversation_trace.jsonl"
    s = trace_stats(load_trace(path))
    assert s["rows"] == 12_031
    assert s["duration_s"] == pytest.approx(3536.999)
    assert s["hash_block_tokens"] == 512
    assert 0.0 < s["prefix_sharing_ratio"] < 1.0
    assert s["prompt_tokens"]["p50"] <= s["prompt_tokens"]["p90"] <= s["prompt_tokens"]["p99"]
    assert s["prompt_tokens"]["p99"] <= s["prompt_tokens"]["max"]


@pytest.mark.skipif(not TRACES.is_dir(), reason="no public traces")
def test_mooncake_prefix_sharing_matches_a_trie_over_raw_hash_ids() -> None:
    """Independent check: walk a prefix trie of the raw hash_ids (full 512-token blocks)."""
    import json

    path = TRACES / "mooncake_fast25" / "synthetic_trace.jsonl"
    trie: dict[tuple[int, int], int] = {}
    shared = total = 0
    with path.open() as f:
        for line in f:
            d = json.loads(line)
            total += d["input_length"]
            node = 0
            for hid in d["hash_ids"][: d["input_length"] // 512]:
                key = (node, hid)
                if key in trie:
                    shared += 512
                else:
                    trie[key] = len(trie) + 1
                node = trie[key]
    s = trace_stats(load_trace(path))
    assert s["prefix_sharing_ratio"] == pytest.approx(shared / total, rel=1e-12)
