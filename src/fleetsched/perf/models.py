"""Model catalog: the architecture figures a roofline step-time model needs.

Every entry is copied from the model's public Hugging Face ``config.json`` (repository named in
the comment); ``total_params`` is the exact parameter count of the released checkpoint, derived
from that config (embeddings, biases and norms included; tied embeddings counted once).
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetsched.errors import InputError


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """A decoder-only transformer, as far as step time and KV memory are concerned.

    ``active_params`` are the parameters one token passes through (== ``total_params`` for a
    dense model; for a mixture of experts the shared part plus ``experts_per_token`` experts).
    ``tie_word_embeddings``: the LM head is the embedding table (counted once in the totals).
    ``max_position_embeddings`` is the context length in tokens, as config.json gives it; vLLM
    derives its default ``max_model_len`` from it.
    """

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    dtype_bytes: int = 2
    total_params: int
    active_params: int
    num_experts: int = 1
    experts_per_token: int = 1
    tie_word_embeddings: bool = False
    #: Sliding-window attention: ``sliding_layers`` of the layers attend only to the last
    #: ``sliding_window`` positions (0 and 0 for full attention everywhere).
    sliding_window: int = 0
    sliding_layers: int = 0

    def __post_init__(self) -> None:
        for field in (
            "num_layers",
            "hidden_size",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
            "max_position_embeddings",
            "dtype_bytes",
            "total_params",
            "active_params",
            "num_experts",
            "experts_per_token",
        ):
            value = getattr(self, field)
            if not (isinstance(value, int) and value >= 1):
                raise InputError(f"model {self.name!r}: {field} must be an integer >= 1")
        if self.num_heads % self.num_kv_heads:
            raise InputError(f"model {self.name!r}: num_heads must be a multiple of num_kv_heads")
        if self.active_params > self.total_params:
            raise InputError(f"model {self.name!r}: active_params > total_params")
        tables = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        if tables >= self.active_params:
            raise InputError(
                f"model {self.name!r}: the embedding table and LM head ({tables:,} parameters) "
                "leave no parameters for the transformer layers"
            )
        if not 0 <= self.sliding_layers <= self.num_layers or (self.sliding_window > 0) != (
            self.sliding_layers > 0
        ):
            raise InputError(
                f"model {self.name!r}: sliding_window and sliding_layers must both be 0 or both"
                " > 0, with sliding_layers <= num_layers"
            )
        if self.experts_per_token > self.num_experts:
            raise InputError(f"model {self.name!r}: experts_per_token > num_experts")
        if (self.num_experts == self.experts_per_token) != (
            self.active_params == self.total_params
        ):
            raise InputError(
                f"model {self.name!r}: active_params must equal total_params exactly when every "
                "expert is active (dense model: num_experts == experts_per_token == 1)"
            )

    @property
    def weight_bytes(self) -> int:
        """Bytes of all weights (``total_params * dtype_bytes``)."""
        return self.total_params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V cache one token occupies over all layers (whole model, not per GPU)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes

    @property
    def is_moe(self) -> bool:
        return self.num_experts > self.experts_per_token

    @property
    def expert_params(self) -> int:
        """Parameters in routed experts, all layers, all experts (0 for a dense model).

        Derived, not stored: with E routed experts of P parameters each and k of them active,
        ``total - active = (E - k) * P``, so the routed part is ``E * (total - active) / (E - k)``.
        Exact for top-k MoE with or without shared experts (those count as dense).
        """
        if not self.is_moe:
            return 0
        return (
            self.num_experts
            * (self.total_params - self.active_params)
            // (self.num_experts - self.experts_per_token)
        )

    @property
    def dense_params(self) -> int:
        """Parameters every token uses: attention, norms, embeddings, shared experts, router."""
        return self.total_params - self.expert_params


MODELS: dict[str, ModelSpec] = {
    # https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json
    # 32 layers, hidden 4096, 32 heads / 8 KV heads, head_dim 128, MLP 14336, vocab 128256,
    # untied embeddings: 8,030,261,248 parameters. max_position_embeddings 131072 (128k context;
    # the llama3 rope_scaling is already included, vLLM does not scale it further).
    "Llama-3.1-8B": ModelSpec(
        name="Llama-3.1-8B",
        num_layers=32,
        hidden_size=4096,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=14336,
        vocab_size=128256,
        max_position_embeddings=131072,
        total_params=8_030_261_248,
        active_params=8_030_261_248,
    ),
    # https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json
    # 80 layers, hidden 8192, 64 heads / 8 KV heads, head_dim 128, MLP 28672, vocab 128256:
    # 70,553,706,496 parameters. max_position_embeddings 131072.
    "Llama-3.1-70B": ModelSpec(
        name="Llama-3.1-70B",
        num_layers=80,
        hidden_size=8192,
        num_heads=64,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=28672,
        vocab_size=128256,
        max_position_embeddings=131072,
        total_params=70_553_706_496,
        active_params=70_553_706_496,
    ),
    # https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json
    # 32 layers, hidden 4096, 32 heads / 32 KV heads (multi-head attention: 4x Llama-3's KV per
    # token), head_dim 128, MLP 11008, vocab 32000, untied embeddings: 6,738,415,616 parameters.
    # max_position_embeddings 4096.
    "Llama-2-7B": ModelSpec(
        name="Llama-2-7B",
        num_layers=32,
        hidden_size=4096,
        num_heads=32,
        num_kv_heads=32,
        head_dim=128,
        intermediate_size=11008,
        vocab_size=32000,
        max_position_embeddings=4096,
        total_params=6_738_415_616,
        active_params=6_738_415_616,
    ),
    # https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json
    # 28 layers, hidden 3584, 28 heads / 4 KV heads (head_dim 3584/28 = 128), MLP 18944,
    # vocab 152064, QKV biases, untied embeddings: 7,615,616,512 parameters.
    # max_position_embeddings 131072 (the -Instruct repo's config.json says 32768, and
    # get_model maps -Instruct names here: set max_model_len for it).
    "Qwen2.5-7B": ModelSpec(
        name="Qwen2.5-7B",
        num_layers=28,
        hidden_size=3584,
        num_heads=28,
        num_kv_heads=4,
        head_dim=128,
        intermediate_size=18944,
        vocab_size=152064,
        max_position_embeddings=131072,
        total_params=7_615_616_512,
        active_params=7_615_616_512,
    ),
    # https://huggingface.co/Qwen/Qwen2.5-32B/blob/main/config.json
    # 64 layers, hidden 5120, 40 heads / 8 KV heads (head_dim 128), MLP 27648, vocab 152064,
    # QKV biases, untied embeddings: 32,763,876,352 parameters. max_position_embeddings 131072
    # (-Instruct: 32768, as for Qwen2.5-7B).
    "Qwen2.5-32B": ModelSpec(
        name="Qwen2.5-32B",
        num_layers=64,
        hidden_size=5120,
        num_heads=40,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=27648,
        vocab_size=152064,
        max_position_embeddings=131072,
        total_params=32_763_876_352,
        active_params=32_763_876_352,
    ),
    # https://huggingface.co/mistralai/Mistral-7B-v0.3/blob/main/config.json
    # 32 layers, hidden 4096, 32 heads / 8 KV heads, head_dim 128, MLP 14336, vocab 32768,
    # untied embeddings: 7,248,023,552 parameters. max_position_embeddings 32768.
    "Mistral-7B-v0.3": ModelSpec(
        name="Mistral-7B-v0.3",
        num_layers=32,
        hidden_size=4096,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=14336,
        vocab_size=32768,
        max_position_embeddings=32768,
        total_params=7_248_023_552,
        active_params=7_248_023_552,
    ),
    # https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json
    # 32 layers, hidden 4096, 32 heads / 8 KV heads, head_dim 128, expert MLP 14336, vocab 32000,
    # 8 local experts, 2 per token: 46,702,792,704 total, 12,879,925,248 active parameters.
    # max_position_embeddings 32768.
    "Mixtral-8x7B": ModelSpec(
        name="Mixtral-8x7B",
        num_layers=32,
        hidden_size=4096,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=14336,
        vocab_size=32000,
        max_position_embeddings=32768,
        total_params=46_702_792_704,
        active_params=12_879_925_248,
        num_experts=8,
        experts_per_token=2,
    ),
    # https://huggingface.co/google/gemma-3-270m/blob/main/config.json
    # 18 layers, hidden 640, 4 heads / 1 KV head, head_dim 256, MLP 2048, vocab 262144, tied
    # embeddings (the LM head is the embedding table): 268,098,176 parameters;
    # max_position_embeddings 32768. Gemma 3 uses a 512-token sliding window on 5 of every 6
    # layers (15 of 18); the KV figures here assume full attention on all layers (an
    # overestimate for the vLLM engine model; the llama.cpp engine model uses the window).
    "gemma-3-270m": ModelSpec(
        name="gemma-3-270m",
        num_layers=18,
        hidden_size=640,
        num_heads=4,
        num_kv_heads=1,
        head_dim=256,
        intermediate_size=2048,
        vocab_size=262144,
        max_position_embeddings=32768,
        total_params=268_098_176,
        active_params=268_098_176,
        tie_word_embeddings=True,
        sliding_window=512,
        sliding_layers=15,
    ),
}

#: Other spellings accepted by :func:`get_model` (lower case, after normalisation) -> catalog name.
MODEL_ALIASES: dict[str, str] = {
    "llama-2-7b-hf": "Llama-2-7B",
    "llama-2-7b-chat-hf": "Llama-2-7B",
    "llama-3.1-8b": "Llama-3.1-8B",
    "meta-llama-3.1-8b": "Llama-3.1-8B",
    "llama-3.1-70b": "Llama-3.1-70B",
    "meta-llama-3.1-70b": "Llama-3.1-70B",
    "mistral-7b": "Mistral-7B-v0.3",
    "mixtral-8x7b-v0.1": "Mixtral-8x7B",
}

_MODEL_INDEX: dict[str, ModelSpec] = {name.lower(): spec for name, spec in MODELS.items()}


def _normalise_model_name(name: str) -> str:
    """Lower-case; drop a Hugging Face ``org/`` prefix and an ``-Instruct`` / ``-it`` marker.

    So ``meta-llama/Llama-3.1-8B-Instruct`` and ``mistralai/Mistral-7B-Instruct-v0.3`` resolve
    to the base architecture, which is what step time depends on.
    """
    key = name.strip().lower().rsplit("/", 1)[-1]
    key = key.replace("-instruct", "")
    if key.endswith("-it"):
        key = key[: -len("-it")]
    return key


def get_model(name: str) -> ModelSpec:
    """Look a model up by catalog name, alias or Hugging Face repo id, case-insensitively.

    Raises :class:`~fleetsched.errors.InputError` listing the known names if there is no match.
    """
    key = _normalise_model_name(name)
    key = MODEL_ALIASES.get(key, key).lower()
    spec = _MODEL_INDEX.get(key)
    if spec is None:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return spec
