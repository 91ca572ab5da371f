"""GPU and model catalogs: lookups, errors, and figures checked against their architecture."""

from __future__ import annotations

import pytest

from fleetsched.errors import InputError
from fleetsched.perf import GPU, GPUS, MODELS, ModelSpec, get_gpu, get_model

GiB = 2**30


def test_required_gpus_present() -> None:
    for name in (
        "H100-SXM",
        "H200",
        "A100-80GB",
        "A100-40GB",
        "A40",
        "L40S",
        "A10G",
        "A10",
        "T4",
        "MI300X",
    ):
        assert GPUS[name].name == name


def test_h100_datasheet_figures() -> None:
    g = get_gpu("H100-SXM")
    assert g.bf16_flops == 989e12
    assert g.mem_bw_bytes_s == 3.35e12
    assert g.mem_bytes == 80 * GiB
    assert g.interconnect_bw_bytes_s == 450e9  # 900 GB/s NVLink total / 2 directions
    assert g.host_link_bw_bytes_s == 64e9


def test_a40_datasheet_figures() -> None:
    g = get_gpu("a40")
    assert (g.bf16_flops, g.mem_bw_bytes_s, g.mem_bytes) == (149.7e12, 696e9, 48 * GiB)
    assert g.interconnect_bw_bytes_s == g.host_link_bw_bytes_s == 32e9  # PCIe Gen4, one way


def test_gpu_figures_plausible() -> None:
    for g in GPUS.values():
        # Every catalogued accelerator: 50 TFLOPS..2 PFLOPS dense, 0.3..6 TB/s (T4: 0.32),
        # 16..256 GiB; low-precision peaks 0 (none) or 1x..4x the BF16 one.
        assert 50e12 <= g.bf16_flops <= 2e15, g.name
        assert 0.3e12 <= g.mem_bw_bytes_s <= 6e12, g.name
        for peak in (g.fp8_flops, g.int8_ops, g.int4_ops):
            assert peak == 0 or g.bf16_flops <= peak <= 4 * g.bf16_flops, g.name
        assert 16 * GiB <= g.mem_bytes <= 256 * GiB, g.name
        assert g.host_link_bw_bytes_s <= g.interconnect_bw_bytes_s, g.name


def test_get_gpu_case_insensitive_and_aliases() -> None:
    assert get_gpu("h100-sxm") is GPUS["H100-SXM"]
    assert get_gpu("  MI300x ") is GPUS["MI300X"]
    assert get_gpu("H100") is GPUS["H100-SXM"]
    assert get_gpu("a100") is GPUS["A100-80GB"]


def test_get_gpu_unknown_lists_known_names() -> None:
    with pytest.raises(InputError) as exc:
        get_gpu("B200-imaginary")
    msg = str(exc.value)
    assert "B200-imaginary" in msg
    for name in GPUS:
        assert name in msg


def test_gpu_rejects_nonpositive_figures() -> None:
    with pytest.raises(InputError, match="mem_bw_bytes_s"):
        GPU("x", 1e12, 0.0, 1, 1.0, 1.0)


def test_required_models_present() -> None:
    for name in (
        "Llama-3.1-8B",
        "Llama-3.1-70B",
        "Qwen2.5-7B",
        "Qwen2.5-32B",
        "Mistral-7B-v0.3",
        "Mixtral-8x7B",
        "gemma-3-270m",
    ):
        assert MODELS[name].name == name


def test_kv_bytes_per_token_hand_values() -> None:
    # 2 (K and V) * layers * kv_heads * head_dim * 2 bytes
    assert get_model("Llama-3.1-8B").kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131072
    assert get_model("Llama-3.1-70B").kv_bytes_per_token == 2 * 80 * 8 * 128 * 2 == 327680
    assert get_model("Qwen2.5-7B").kv_bytes_per_token == 2 * 28 * 4 * 128 * 2 == 57344
    assert get_model("gemma-3-270m").kv_bytes_per_token == 2 * 18 * 1 * 256 * 2 == 18432


def test_weight_bytes() -> None:
    assert get_model("Llama-3.1-8B").weight_bytes == 16_060_522_496  # ≈ 16.06 GB
    assert get_model("Llama-3.1-70B").weight_bytes == 141_107_412_992


def _params_from_architecture(
    m: ModelSpec,
    *,
    qkv_bias: bool = False,
    tied: bool = False,
    norms_per_layer: int = 2,
    qk_norm: bool = False,
) -> tuple[int, int]:
    """(total, active) parameters of a Llama-style decoder rebuilt from its config figures."""
    h = m.hidden_size
    q = m.num_heads * m.head_dim
    kv = m.num_kv_heads * m.head_dim
    attn = h * q + 2 * h * kv + q * h
    if qkv_bias:
        attn += q + 2 * kv
    if qk_norm:
        attn += 2 * m.head_dim
    expert = 3 * h * m.intermediate_size  # gate, up, down
    router = h * m.num_experts if m.num_experts > 1 else 0
    shared = attn + router + norms_per_layer * h
    embeddings = m.vocab_size * h * (1 if tied else 2)
    total = m.num_layers * (shared + m.num_experts * expert) + embeddings + h
    active = m.num_layers * (shared + m.experts_per_token * expert) + embeddings + h
    return total, active


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("Llama-3.1-8B", {}),
        ("Llama-3.1-70B", {}),
        ("Qwen2.5-7B", {"qkv_bias": True}),
        ("Qwen2.5-32B", {"qkv_bias": True}),
        ("Mistral-7B-v0.3", {}),
        ("Mixtral-8x7B", {}),
        ("gemma-3-270m", {"norms_per_layer": 4, "qk_norm": True}),
    ],
)
def test_param_counts_match_architecture(name: str, kwargs: dict[str, bool]) -> None:
    m = get_model(name)
    rebuilt = _params_from_architecture(m, tied=m.tie_word_embeddings, **kwargs)
    assert rebuilt == (m.total_params, m.active_params)
    # only gemma ties its LM head to the embedding table
    assert m.tie_word_embeddings == (name == "gemma-3-270m")


def test_moe_split() -> None:
    m = get_model("Mixtral-8x7B")
    assert round(m.total_params / 1e9, 1) == 46.7
    assert round(m.active_params / 1e9, 1) == 12.9
    assert m.expert_params == 32 * 8 * 3 * 4096 * 14336  # every expert MLP of every layer
    assert m.dense_params + m.expert_params == m.total_params
    dense = get_model("Llama-3.1-8B")
    assert dense.expert_params == 0 and dense.dense_params == dense.total_params


def test_get_model_names() -> None:
    assert get_model("llama-3.1-8b") is MODELS["Llama-3.1-8B"]
    assert get_model("meta-llama/Llama-3.1-8B-Instruct") is MODELS["Llama-3.1-8B"]
    assert get_model("meta-llama/Meta-Llama-3.1-70B-Instruct") is MODELS["Llama-3.1-70B"]
    assert get_model("Qwen/Qwen2.5-7B-Instruct") is MODELS["Qwen2.5-7B"]
    assert get_model("mistralai/Mistral-7B-Instruct-v0.3") is MODELS["Mistral-7B-v0.3"]
    assert get_model("Mistral-7B") is MODELS["Mistral-7B-v0.3"]
    assert get_model("mistralai/Mixtral-8x7B-Instruct-v0.1") is MODELS["Mixtral-8x7B"]
    assert get_model("google/gemma-3-270m-it") is MODELS["gemma-3-270m"]


def test_get_model_unknown_lists_known_names() -> None:
    with pytest.raises(InputError) as exc:
        get_model("Llama-9-1T")
    for name in MODELS:
        assert name in str(exc.value)


def test_model_spec_validation() -> None:
    base = dict(
        name="m",
        num_layers=2,
        hidden_size=64,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        intermediate_size=128,
        vocab_size=100,
        max_position_embeddings=4096,
        total_params=20_000,
        active_params=20_000,
    )
    ModelSpec(**base)
    with pytest.raises(InputError, match="num_kv_heads"):
        ModelSpec(**{**base, "num_kv_heads": 3})
    with pytest.raises(InputError, match="active_params"):
        ModelSpec(**{**base, "active_params": 40_000})
    with pytest.raises(InputError, match="active_params must equal"):
        ModelSpec(**{**base, "active_params": 15_000})
    with pytest.raises(InputError, match="num_layers"):
        ModelSpec(**{**base, "num_layers": 0})
    # two 100 x 64 tables (12,800 parameters) leave nothing for the layers of a 12,000 model
    with pytest.raises(InputError, match="no parameters for the transformer layers"):
        ModelSpec(**{**base, "total_params": 12_000, "active_params": 12_000})
    tied = {"total_params": 12_000, "active_params": 12_000, "tie_word_embeddings": True}
    ModelSpec(**{**base, **tied})  # one table of 6,400 leaves 5,600 for the layers
