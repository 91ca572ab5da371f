"""Step time of a llama.cpp-style engine: a step is a list of micro-batches (ubatches).

llama.cpp's server builds one batch per loop iteration (decode tokens and prompt chunks of
several slots), and ``llama_decode`` runs it as a sequence of ubatches of at most ``n_ubatch``
tokens, split so that each ubatch holds the same number of tokens of consecutive sequences
(see :mod:`fleetsched.engine.llamacpp`). The time model therefore prices one **ubatch**:

``tokens``
    tokens computed (every one goes through the transformer body);
``outputs``
    tokens whose logits are computed and sampled (decodes, and a prompt's last token): the
    LM head and the sampler run once per output — for a small model with a large vocabulary
    (gemma-3-270m: 168 M of its 268 M parameters are the embedding / LM head) this dominates;
``pairs``
    query-key pairs attended, averaged over layers: a token at position ``p`` attends ``p + 1``
    keys in a full-attention layer and ``min(p + 1, window)`` in a sliding-window layer;
``reads``
    KV cells read, averaged over layers: each sequence's attention reads the keys and
    values its last token in the ubatch attends, once per ubatch (in a full-attention layer
    the earlier tokens of a prompt chunk attend a subset of them; a sliding-window layer's
    first tokens attend up to ``tokens - 1`` older cells more, left out). A decode token reads as
    many cells as it attends pairs, a 512-token prompt chunk about 1/256 of its pairs: this
    is what makes a decode step's attention dearer per pair than a prefill's (matrix-vector
    against matrix-matrix work);
``seqs``
    sequences in the ubatch.

A step also pays for the context checkpoints it creates (llama.cpp copies the sliding-window
part of the KV cache before the batch runs) and for prompt-cache copies between a slot and
host RAM. Two implementations of :class:`UbatchTimeModel`:

- :class:`CPURoofline` — from the CPU catalog (:mod:`fleetsched.perf.cpu`) and the model
  catalog, no measurement needed;
- :class:`LlamaCppProfile` — coefficients fitted by ``fleetsched calibrate`` to a real server,
  with a table for small ubatches where the time is not linear in their size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from fleetsched.core.config import parse_yaml_model, read_text
from fleetsched.errors import InputError
from fleetsched.perf.cpu import CPU
from fleetsched.perf.models import ModelSpec


@dataclass(frozen=True, slots=True)
class Ubatch:
    """One micro-batch of a step (see the module docstring)."""

    tokens: int
    seqs: int
    outputs: int
    pairs: float
    reads: float = 0.0


@dataclass(slots=True)
class StepPlan:
    """What one engine step computes, as the time model needs it."""

    ubatches: list[Ubatch] = field(default_factory=list)
    #: Context checkpoints created this step, and the KV cells (tokens) they copy in total.
    checkpoints: int = 0
    checkpoint_cells: int = 0
    #: Bytes copied between slots and the host-RAM prompt cache before the step.
    copy_bytes: float = 0.0
    #: (request id, slot, prompt tokens this step or 0 for a decode, whether it yields a
    #: token), for observers (calibration, debugging).
    members: list[tuple[int, int, int, bool]] = field(default_factory=list)


@runtime_checkable
class UbatchTimeModel(Protocol):
    """Seconds of a llama.cpp step, and the per-request latency outside the engine loop."""

    #: Seconds between a request's arrival and its task reaching the server's queue (HTTP,
    #: JSON and token-array parsing), paid by every request outside the engine loop.
    request_s: float

    def step_time(self, plan: StepPlan) -> float: ...


class CPURoofline:
    """Roofline of one llama.cpp ubatch on ``threads`` cores of a catalogued CPU.

    ::

        F       = threads * fp32_flops_per_core * compute_efficiency
        BW      = mem_bw_bytes_s * bandwidth_efficiency
        body    = active_params - embedding table(s)       (the LM head is priced per output)
        ubatch  = max(weight_bytes / BW, (2 * body * tokens + 2 * vocab * hidden * outputs) / F)
                  + 4 * layers * heads * head_dim * pairs / F
                  + reads * kv_bytes_per_token / BW + ubatch_overhead_s
        ckpt    = checkpoint_cells * kv_bytes_per_swa_token * 2 / BW + checkpoint_overhead_s
        copy    = copy_bytes * 2 / BW

    ``weight_bytes = total_params * weight_bits / 8`` (Q4_K_M is about 4.9 bits per weight on
    large models; small models keep their embedding at higher precision: the gemma-3-270m
    Q4_K_M file is 253 MB, 7.55 bits per parameter). Defaults are deliberately simple; fit a
    :class:`LlamaCppProfile` for accuracy.
    """

    __slots__ = (
        "_attn_flop_s",
        "_body_flop_s",
        "_ckpt_byte_s",
        "_copy_byte_s",
        "_head_flop_s",
        "_read_s",
        "_weights_s",
        "checkpoint_overhead_s",
        "cpu",
        "model",
        "request_s",
        "threads",
        "ubatch_overhead_s",
    )

    def __init__(
        self,
        cpu: CPU,
        model: ModelSpec,
        threads: int,
        *,
        weight_bits: float = 16.0,
        compute_efficiency: float = 0.25,
        bandwidth_efficiency: float = 0.7,
        ubatch_overhead_s: float = 0.002,
        checkpoint_overhead_s: float = 0.001,
        request_s: float = 0.005,
    ) -> None:
        if not 1 <= threads <= cpu.cores:
            raise InputError(f"threads must be in 1..{cpu.cores} on {cpu.name}, got {threads}")
        for name, value in (
            ("compute_efficiency", compute_efficiency),
            ("bandwidth_efficiency", bandwidth_efficiency),
        ):
            if not 0 < value <= 1:
                raise InputError(f"{name} must be in (0, 1], got {value!r}")
        if not weight_bits > 0:
            raise InputError(f"weight_bits must be > 0, got {weight_bits!r}")
        self.cpu, self.model, self.threads = cpu, model, threads
        self.ubatch_overhead_s = float(ubatch_overhead_s)
        self.checkpoint_overhead_s = float(checkpoint_overhead_s)
        self.request_s = float(request_s)
        flops = threads * cpu.fp32_flops_per_core * compute_efficiency
        bw = cpu.mem_bw_bytes_s * bandwidth_efficiency
        head = model.vocab_size * model.hidden_size
        tables = head if model.tie_word_embeddings else 2 * head  # embedding lookup is free
        self._weights_s = model.total_params * weight_bits / 8 / bw
        self._body_flop_s = 2 * (model.active_params - tables) / flops
        self._head_flop_s = 2 * head / flops
        self._attn_flop_s = 4 * model.num_layers * model.num_heads * model.head_dim / flops
        self._read_s = model.kv_bytes_per_token / bw  # reads are averaged over layers
        swa_token_bytes = model.kv_bytes_per_token * model.sliding_layers / model.num_layers
        self._ckpt_byte_s = 2 * swa_token_bytes / bw
        self._copy_byte_s = 2 / bw

    def ubatch_time(self, u: Ubatch) -> float:
        compute = u.tokens * self._body_flop_s + u.outputs * self._head_flop_s
        attention = u.pairs * self._attn_flop_s + u.reads * self._read_s
        return max(self._weights_s, compute) + attention + self.ubatch_overhead_s

    def step_time(self, plan: StepPlan) -> float:
        t = sum(self.ubatch_time(u) for u in plan.ubatches)
        t += plan.checkpoints * self.checkpoint_overhead_s
        t += plan.checkpoint_cells * self._ckpt_byte_s
        return t + plan.copy_bytes * self._copy_byte_s


#: Linear coefficients of :class:`LlamaCppProfile`, in the column order of :func:`plan_features`
#: (the small-ubatch table follows them).
LINEAR_COEFFICIENTS = ("ubatch_s", "token_s", "output_s", "pair_s", "kv_read_s", "checkpoint_s")


class LlamaCppProfile(BaseModel):
    """Fitted step-time model of one llama.cpp server (model, device, threads).

    A ubatch of ``n`` tokens costs ``small_ubatch_s[n - 1]`` when ``n <= len(small_ubatch_s)``
    (small ubatches, e.g. decode steps of ``n`` streams, where the time is not linear in
    ``n``), else ``ubatch_s + token_s * n``; either way plus ``output_s`` per output,
    ``pair_s`` per attended pair and ``kv_read_s`` per KV cell read. A step adds
    ``checkpoint_s`` per context checkpoint and ``copy_byte_s`` per byte copied to or from the
    host-RAM prompt cache. Every term is non-negative, so no step can take negative time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    engine: Literal["llamacpp"] = "llamacpp"
    model: str = Field(min_length=1)
    device: str = Field(min_length=1, description="CPU (or GPU) catalog name")
    threads: int = Field(1, ge=1)
    ubatch_s: float = Field(ge=0, description="fixed seconds per ubatch")
    token_s: float = Field(ge=0, description="seconds per token of a ubatch")
    output_s: float = Field(ge=0, description="seconds per output (LM head + sampling)")
    pair_s: float = Field(ge=0, description="seconds per attended query-key pair")
    kv_read_s: float = Field(
        0.0, ge=0, description="seconds per KV cell a sequence's attention reads in a ubatch"
    )
    checkpoint_s: float = Field(0.0, ge=0, description="seconds per context checkpoint")
    request_s: float = Field(0.0, ge=0, description="per-request latency outside the loop")
    small_ubatch_s: list[float] = Field(
        default_factory=list, description="seconds of a ubatch of 1, 2, ... tokens, outputs apart"
    )
    copy_byte_s: float = Field(0.0, ge=0, description="seconds per byte of prompt-cache copy")
    noise_cv: float | None = Field(None, ge=0, description="measured run-to-run spread")
    notes: str = ""

    def model_post_init(self, _context: object) -> None:
        if any(not v >= 0 for v in self.small_ubatch_s):
            raise InputError("small_ubatch_s: every entry must be >= 0")

    def ubatch_time(self, u: Ubatch) -> float:
        n = u.tokens
        table = self.small_ubatch_s
        base = table[n - 1] if n <= len(table) else self.ubatch_s + self.token_s * n
        return base + self.output_s * u.outputs + self.pair_s * u.pairs + self.kv_read_s * u.reads

    def step_time(self, plan: StepPlan) -> float:
        t = 0.0
        for u in plan.ubatches:
            t += self.ubatch_time(u)
        return t + self.checkpoint_s * plan.checkpoints + self.copy_byte_s * plan.copy_bytes

    def coefficients(self) -> np.ndarray:
        """The fitted coefficients in :func:`plan_features` order (plus ``request_s`` last)."""
        lin = [getattr(self, name) for name in LINEAR_COEFFICIENTS]
        return np.array([*lin, *self.small_ubatch_s, self.request_s], dtype=float)

    def to_yaml(self) -> str:
        data = self.model_dump()
        for key in ("notes", "noise_cv"):
            if not data[key]:
                del data[key]
        return yaml.safe_dump(data, sort_keys=False)


def plan_features(plan: StepPlan, table_size: int) -> np.ndarray:
    """Counts that a :class:`LlamaCppProfile` with a ``table_size``-entry small-ubatch table
    multiplies by its coefficients (order: :data:`LINEAR_COEFFICIENTS`, the table, then
    ``request_s`` which a step never uses). Copies are priced at a fixed rate, not fitted."""
    f = np.zeros(len(LINEAR_COEFFICIENTS) + table_size + 1)
    for u in plan.ubatches:
        n = u.tokens
        if n <= table_size:
            f[len(LINEAR_COEFFICIENTS) + n - 1] += 1
        else:
            f[0] += 1
            f[1] += n
        f[2] += u.outputs
        f[3] += u.pairs
        f[4] += u.reads
    f[5] += plan.checkpoints
    return f


class StepModelUbatches:
    """Prices a llama.cpp ubatch with a GPU step-time model (roofline or vLLM profile): a
    ubatch of ``tokens`` is one forward pass of that many prefill tokens over ``pairs``."""

    __slots__ = ("request_s", "step_model")

    def __init__(self, step_model: object, request_s: float = 0.005) -> None:
        self.step_model = step_model
        self.request_s = request_s

    def step_time(self, plan: StepPlan) -> float:
        st = self.step_model.step_time  # type: ignore[attr-defined]
        return sum(st(u.tokens, u.pairs, 0, 0) for u in plan.ubatches)


def parse_llamacpp_profile(text: str, source: str = "<profile>") -> LlamaCppProfile:
    """Parse and validate llama.cpp profile YAML; errors name ``file:line: field``."""
    return parse_yaml_model(text, source, LlamaCppProfile, "a llama.cpp step-time profile")


def load_llamacpp_profile(path: str | Path) -> LlamaCppProfile:
    return parse_llamacpp_profile(read_text(path, "step-time profile"), str(path))
