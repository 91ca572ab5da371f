"""The real engine: llama-server started on 127.0.0.1 by the test, answered, stopped."""

from __future__ import annotations

import json
import urllib.request

import pytest

from fleetsched.errors import FleetschedError, InputError
from fleetsched.launch import LlamaServer

pytestmark = pytest.mark.llamacpp


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_llama_server_completes_counts_tokens_and_exports_metrics() -> None:
    with LlamaServer(parallel=2, ctx=2048) as srv:
        out = _post(
            srv.url + "/v1/completions",
            {"prompt": [1, 2, 3, 4, 5, 6, 7, 8], "max_tokens": 5, "ignore_eos": True},
        )
        assert out["usage"]["prompt_tokens"] == 8
        assert out["usage"]["completion_tokens"] == 5
        with urllib.request.urlopen(srv.url + "/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert "llamacpp:requests_processing" in metrics
        assert "llamacpp:tokens_predicted_total 5" in metrics
        assert srv.running
    assert not srv.running


def test_a_bad_model_file_fails_with_the_server_log(tmp_path) -> None:
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"nope")
    with pytest.raises(FleetschedError, match="exited with code"):
        LlamaServer(model=bad, ready_timeout_s=30).start()


def test_only_loopback() -> None:
    with pytest.raises(InputError, match="only started on loopback"):
        LlamaServer(host="0.0.0.0").start()
