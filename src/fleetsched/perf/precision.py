"""Numeric precision of weights, activations and the KV cache: bytes per value and the
tensor-core peak a step runs at (docs/perf.md, "Precision and KV compression").

Three knobs, named after what they quantise:

- ``weight_dtype`` (bf16, fp8, int8, int4): the bytes of the transformer layers' weights. The
  embedding table and the LM head stay in the model dtype, as vLLM's FP8 and AWQ/GPTQ
  checkpoints keep them (``lm_head`` is in every llm-compressor recipe's ignore list).
- ``activation_dtype`` (bf16, fp8, int8, int4): the GEMMs' input precision, which picks the
  tensor-core peak they run at. bf16 activations with quantised weights is weight-only
  quantisation (W4A16, W8A16): the weights are dequantised inside the GEMM, which then runs at the
  BF16 peak and only reads fewer bytes. W8A8 runs at the FP8 or INT8 peak, W4A8 (QServe; COMET's
  W4A8 share) at the INT8 (or FP8) peak, W4A4 (COMET: Liu et al., "COMET: Towards Practical
  W4A4KV4 LLMs Serving", arXiv:2410.12168) at the INT4 peak. Weights may not be wider than the
  activations they multiply (W16A8 is no scheme any engine ships).
- ``kv_dtype`` (bf16, fp8, int4): bytes per token of KV cache, so KV capacity in blocks and the
  decode attention's reads. fp8 is vLLM's ``kv_cache_dtype="fp8"`` (per-tensor scales, no bytes
  per token); int4 is COMET's KV4 and QServe's per-head KV4: 4 bits per value plus an fp16 scale
  and an fp16 zero point per head vector of each token.

Dequantisation is not free. A quantised KV read costs ``1 + kv_dequant_overhead`` times its
ideal time (bytes / bandwidth). Defaults, per KV dtype and GPU (:func:`default_kv_dequant`):

- fp8 on a GPU with FP8 tensor cores: 0.45. FlashAttention-3's FP8 attention (queries
  quantised too, attention in the FP8 domain) on H100 took 0.72-0.73x the BF16 time at batch
  64 and 16k-32k context (pytorch/FBGEMM PR #4031, table "fp8_perhead+fp8attn" vs "bf16":
  182.0 / 252.4 us and 357.0 / 487.8 us), where halved bytes alone give 0.5x: 0.725 / 0.5 - 1.
- fp8 without FP8 tensor cores (A100, A40, A10, T4): 1.0. vLLM dequantises inside its paged
  attention kernel there and documents "no latency improvements as the implementation does not
  yet include fused dequantization and attention" (docs, Quantized KV Cache, v0.11): the read
  takes as long as the BF16 one, twice its ideal time.
- int4: 1.0, an assumption: a kernel that dequantises on CUDA cores at half its ideal rate
  (0.53x of BF16's decode attention time instead of 0.27x). Published KV4 kernels range from near
  their byte ratio (BitDecoding, arXiv:2503.18773, which runs the dequantised tiles on tensor
  cores) to several times slower (BitDecoding reports up to 4.3x over QServe's KV4 attention).

Attention runs at the FP8 peak when the KV cache is fp8 and the GPU has FP8 tensor cores (as
FlashAttention-3 does), else at the BF16 peak (int4 KV is dequantised to fp16 first, as COMET and
QServe do). Not modelled: the cost of quantising activations (fused into the preceding norm in
COMET, QServe and vLLM) and of writing quantised KV, and any quality loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from fleetsched.errors import InputError
from fleetsched.perf.hardware import GPU
from fleetsched.perf.kv_compression import KVCompression
from fleetsched.perf.models import ModelSpec

#: Precisions of weights and activations.
DTYPES: tuple[str, ...] = ("bf16", "fp8", "int8", "int4")
#: Precisions of the KV cache.
KV_DTYPES: tuple[str, ...] = ("bf16", "fp8", "int4")

#: Bytes per weight parameter of the transformer layers. int4: 4 bits plus an fp16 scale and an
#: fp16 zero point per group of 128 input channels (AWQ's and GPTQ's group size 128):
#: ``4 + 32 / 128 = 4.25`` bits. fp8 and int8 carry per-channel or per-tensor scales (negligible).
WEIGHT_BYTES: dict[str, Fraction] = {
    "bf16": Fraction(2),
    "fp8": Fraction(1),
    "int8": Fraction(1),
    "int4": Fraction(17, 32),
}
#: Bytes of metadata per head vector (``head_dim`` values of K or V of one token) of an int4
#: KV cache: an fp16 scale and an fp16 zero point.
INT4_KV_GROUP_BYTES = 4

#: Which weight dtypes each activation dtype's GEMM accepts (weights never wider than inputs).
_GEMM_WEIGHTS: dict[str, tuple[str, ...]] = {
    "bf16": DTYPES,  # weight-only quantisation: dequantised to bf16 in the GEMM
    "fp8": ("fp8", "int4"),  # W8A8-FP8, W4A8-FP8
    "int8": ("int8", "int4"),  # W8A8-INT8 (SmoothQuant), W4A8 (QServe)
    "int4": ("int4",),  # W4A4 (COMET, Atom)
}

#: ``kv_dequant_overhead`` defaults (see the module docstring for their sources).
FP8_ATTENTION_DEQUANT = 0.45
IN_KERNEL_DEQUANT = 1.0

#: One line per dtype for ``fleetsched list numerics``: bytes, and where the figure comes from.
DTYPE_NOTES: dict[str, str] = {
    "bf16": "2 bytes; the models' native dtype (T4: fp16)",
    "fp8": "1 byte (E4M3, per-tensor scales); weights/activations need FP8 tensor cores",
    "int8": "1 byte (per-channel scales); weights and activations only",
    "int4": "4 bits + fp16 scale and zero per 128 weights / per head vector of KV",
}


def kv_bytes_per_value(kv_dtype: str) -> Fraction:
    """Bytes per K or V value, scales excluded (int4's are per head vector)."""
    return {"bf16": Fraction(2), "fp8": Fraction(1), "int4": Fraction(1, 2)}[kv_dtype]


def default_kv_dequant(kv_dtype: str, gpu: GPU) -> float:
    """The documented default ``kv_dequant_overhead`` of ``kv_dtype`` on ``gpu``."""
    if kv_dtype == "bf16":
        return 0.0
    if kv_dtype == "fp8" and gpu.fp8_flops:
        return FP8_ATTENTION_DEQUANT
    return IN_KERNEL_DEQUANT


@dataclass(frozen=True, slots=True)
class Precision:
    """Weight, activation and KV-cache precision of one instance group, and its KV compression
    (``None``: none). ``kv_dequant_overhead=None`` takes :func:`default_kv_dequant`. The default
    is bf16 everywhere, which changes nothing."""

    weight_dtype: str = "bf16"
    activation_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    kv_dequant_overhead: float | None = None
    kv_compression: KVCompression | None = None

    def __post_init__(self) -> None:
        for field, known in (
            ("weight_dtype", DTYPES),
            ("activation_dtype", DTYPES),
            ("kv_dtype", KV_DTYPES),
        ):
            if getattr(self, field) not in known:
                raise InputError(
                    f"{field} must be one of {', '.join(known)}, got {getattr(self, field)!r}"
                )
        if self.weight_dtype not in _GEMM_WEIGHTS[self.activation_dtype]:
            raise InputError(
                f"weight_dtype {self.weight_dtype} with activation_dtype "
                f"{self.activation_dtype}: a GEMM with {self.activation_dtype} inputs takes "
                f"{' or '.join(_GEMM_WEIGHTS[self.activation_dtype])} weights"
            )
        o = self.kv_dequant_overhead
        if o is not None and not (isinstance(o, int | float) and 0 <= o < float("inf")):
            raise InputError(f"kv_dequant_overhead must be a finite number >= 0, got {o!r}")

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_PRECISION

    @property
    def gemm_dtype(self) -> str:
        """The tensor-core input type of the linear layers (the activations')."""
        return self.activation_dtype

    def attention_dtype(self, gpu: GPU) -> str:
        """fp8 when the KV cache is fp8 and ``gpu`` has FP8 tensor cores, else bf16."""
        return "fp8" if self.kv_dtype == "fp8" and gpu.fp8_flops else "bf16"

    def dequant_overhead(self, gpu: GPU) -> float:
        if self.kv_dequant_overhead is not None:
            return float(self.kv_dequant_overhead)
        return default_kv_dequant(self.kv_dtype, gpu)

    @property
    def kv_memory_fraction(self) -> float:
        """Share of the uncompressed KV bytes a token keeps on the GPU (1.0 uncompressed)."""
        c = self.kv_compression
        return 1.0 if c is None else c.memory_fraction

    @property
    def reclaim_fraction(self) -> float:
        c = self.kv_compression
        return 0.0 if c is None else c.reclaim

    def check_gpu(self, gpu: GPU) -> None:
        """Raise :class:`InputError` if ``gpu`` has no tensor cores for the GEMMs' inputs."""
        dtype = self.gemm_dtype
        if not gpu.peak(dtype):
            have = [d for d in DTYPES if gpu.peak(d)]
            raise InputError(
                f"{gpu.name} has no {dtype.upper()} tensor cores for activation_dtype {dtype} "
                f"(it has {', '.join(have)})"
            )


DEFAULT_PRECISION = Precision()


def kv_bytes_per_token_per_gpu(model: ModelSpec, tp: int, kv_dtype: str = "bf16") -> int:
    """Bytes of KV cache one token occupies on each GPU of a ``tp`` group (before compression).

    ``2 * layers * kv_heads_per_gpu * head_dim`` values (K and V) at the model dtype (bf16), one
    byte (fp8), or half a byte plus :data:`INT4_KV_GROUP_BYTES` per head vector (int4). KV heads
    are split across ranks; when ``tp > num_kv_heads`` each rank keeps one (vLLM replicates them).
    """
    heads = max(1, model.num_kv_heads // tp)
    vectors = 2 * model.num_layers * heads  # K and V head vectors of one token
    if kv_dtype == "bf16":
        return vectors * model.head_dim * model.dtype_bytes
    if kv_dtype == "fp8":
        return vectors * model.head_dim
    if kv_dtype == "int4":
        return vectors * (model.head_dim // 2 + INT4_KV_GROUP_BYTES)
    raise InputError(f"kv_dtype must be one of {', '.join(KV_DTYPES)}, got {kv_dtype!r}")


def embedding_params(model: ModelSpec) -> int:
    """Parameters of the embedding table and LM head (one table when they are tied)."""
    table = model.vocab_size * model.hidden_size
    return table if model.tie_word_embeddings else 2 * table


def weight_bytes(model: ModelSpec, weight_dtype: str = "bf16") -> int:
    """Bytes of all weights: the transformer layers at ``weight_dtype``, the embedding table and
    LM head at the model dtype. ``model.weight_bytes`` for bf16."""
    tables = embedding_params(model)
    per = model.dtype_bytes if weight_dtype == "bf16" else WEIGHT_BYTES[weight_dtype]
    layers = (model.total_params - tables) * Fraction(per)
    return tables * model.dtype_bytes + int(-(-layers // 1))  # ceil to whole bytes
