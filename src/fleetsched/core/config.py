"""Scenario configuration: pydantic models loaded from YAML.

A scenario names a workload, a cluster (groups of instances), policies by registry name and
SLO classes. ``load_scenario`` reports invalid input as ``file:line: field.path: problem``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from fleetsched.errors import InputError

M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    # A docstring under a field is its description (docs/scenario.md is generated from them).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ArrivalConfig(_Model):
    """Arrival process. ``rate`` is the mean rate in requests/s (sessions/s for multi-turn)."""

    kind: Literal["poisson", "gamma", "bursty"] = "poisson"
    """Process: Poisson, Gamma-distributed gaps (burstier with cv > 1) or on/off bursts."""
    rate: float = Field(4.0, gt=0)
    """Mean arrival rate, per second: requests, or sessions when they have several turns."""
    cv: float = Field(1.0, gt=0, description="gamma: coefficient of variation of gaps")
    on_s: float = Field(10.0, gt=0, description="bursty: mean length of an on period")
    off_s: float = Field(10.0, gt=0, description="bursty: mean length of an off period")
    off_rate_factor: float = Field(0.0, ge=0, le=1, description="bursty: rate while off / rate")


class LengthConfig(_Model):
    """A token-length distribution."""

    kind: Literal["fixed", "uniform", "lognormal", "empirical"] = "fixed"
    """Distribution: one value, uniform integers, lognormal, or resampled from a trace file."""
    value: int = Field(256, ge=1, description="fixed")
    low: int = Field(1, ge=1, description="uniform: inclusive lower bound")
    high: int = Field(512, ge=1, description="uniform: inclusive upper bound")
    mean: float = Field(256.0, gt=0, description="lognormal: mean of the distribution")
    sigma: float = Field(1.0, ge=0, description="lognormal: sigma of the underlying normal")
    max: int = Field(32768, ge=1, description="cap applied to every sample")
    path: str | None = Field(None, description="empirical: trace file to sample from")
    column: Literal["prompt", "output"] = "prompt"
    """empirical: which length of the trace to sample."""

    @model_validator(mode="after")
    def _check(self) -> LengthConfig:
        if self.kind == "uniform" and self.low > self.high:
            raise ValueError(f"uniform: low ({self.low}) > high ({self.high})")
        if self.kind == "empirical" and not self.path:
            raise ValueError("empirical: 'path' is required")
        return self


class TenantConfig(_Model):
    name: str
    """Tenant name, put on its requests (``Request.tenant``)."""
    weight: float = Field(1.0, gt=0)
    """Share of the sessions that belong to this tenant (relative to the others)."""
    priority: int = 0
    """Priority of its requests (larger = more important)."""
    slo_class: str = "default"
    """SLO class of its requests (a key of ``slo_classes``)."""
    deterministic: bool = False
    """Its requests need deterministic outputs (served as ``engine.determinism`` says)."""


class SessionConfig(_Model):
    """Multi-turn chat: later turns extend the earlier prompt (shared prefix)."""

    turns_mean: float = Field(1.0, ge=1, description="mean turns per session (geometric)")
    think_time_s: float = Field(5.0, ge=0, description="mean user think time between turns")


class StreamingConfig(_Model):
    """Prompts that arrive in pieces (retrieval streaming, as in Stream2LLM's crawler and
    vector-search workloads): the prompt is split into ``chunks`` near-equal pieces, the first
    at arrival and each next one an Exp(``gap_s``) gap later."""

    chunks: int = Field(8, ge=1)
    """Pieces each prompt arrives in."""
    gap_s: float = Field(0.7, ge=0)
    """Mean gap between pieces, seconds (exponential)."""


class TaskMixConfig(_Model):
    """A task class in the mix of a multi-model workload (``workload/tasks.py``)."""

    name: str
    """Task class put on its requests (a row of the scenario's quality table)."""
    weight: float = Field(1.0, gt=0)
    """Share of the requests of this class (relative to the others)."""


class SyntheticConfig(_Model):
    num_requests: int = Field(1000, ge=1)
    """Requests to generate."""
    arrival: ArrivalConfig = ArrivalConfig()
    """When sessions start."""
    prompt: LengthConfig = LengthConfig(kind="lognormal", mean=1000, sigma=0.8)
    """Length of each new user message (tokens)."""
    output: LengthConfig = LengthConfig(kind="lognormal", mean=250, sigma=0.8)
    """Output length of each request (tokens)."""
    sessions: SessionConfig = SessionConfig()
    """Multi-turn sessions."""
    system_prompt_tokens: int = Field(0, ge=0, description="shared system prompt length")
    num_system_prompts: int = Field(1, ge=1)
    """Distinct system prompts, one picked at random per session."""
    tenants: list[TenantConfig] = [TenantConfig(name="default")]
    """Tenants, drawn per session by weight."""
    model: str | None = None
    """Model name put on every request (None: any instance serves it)."""
    streaming: StreamingConfig | None = None
    """Prompts arrive in pieces over time (None: each prompt is whole at arrival)."""
    tasks: list[TaskMixConfig] = []
    """Task classes drawn per request by weight (empty: requests carry no task class)."""
    difficulty: bool = False
    """Give each request a difficulty drawn uniformly in [0, 1] (with ``tasks``)."""


class WorkflowGenConfig(_Model):
    """Generated agent workflows (``workload/workflow_gen.py``): DAGs of LLM calls with tool
    gaps, where a call's prompt extends an earlier call's context."""

    num_workflows: int = Field(100, ge=1)
    """Workflows to generate."""
    arrival: ArrivalConfig = ArrivalConfig(rate=0.5)
    """When workflows start (``rate`` in workflows/s)."""
    shape: Literal["chain", "fan_out", "text2sql"] = "chain"
    """chain: each call extends the previous one; fan_out: a plan, ``calls`` parallel branches
    that extend it, then a join; text2sql: HEXGEN-TEXT2SQL's CHESS-like pipeline (keywords,
    ``calls`` SQL candidates each revised ``revisions`` times, unit tests, evaluation)."""
    calls: int = Field(4, ge=1)
    """chain: calls per workflow; fan_out: branches; text2sql: SQL candidates."""
    revisions: int = Field(2, ge=0)
    """text2sql: self-correction rounds per candidate."""
    prompt: LengthConfig = LengthConfig(kind="lognormal", mean=400, sigma=0.6)
    """New prompt tokens each call adds to the context it extends."""
    output: LengthConfig = LengthConfig(kind="lognormal", mean=150, sigma=0.6)
    """Output tokens of each call."""
    gap_s: float = Field(1.0, ge=0)
    """Mean tool/think gap before a call, after its parents finish (exponential)."""
    system_prompt_tokens: int = Field(1000, ge=0)
    """Shared prefix (system prompt, database schema) of every workflow's first call."""
    deadline_s: float | None = Field(None, gt=0)
    """End-to-end deadline of each workflow, seconds after it starts (None: none)."""
    slo_class: str = "default"
    """SLO class of every call."""
    tenant: str = "default"
    """Tenant of every call."""
    model: str | None = None
    """Model name put on every call (None: any instance serves it)."""


class TransformConfig(_Model):
    rate_scale: float = Field(1.0, gt=0, description="multiply arrival rate (divide timestamps)")
    start_s: float | None = Field(None, ge=0)
    """Keep arrivals at or after this trace time (s); times are shifted to start at 0."""
    end_s: float | None = Field(None, ge=0)
    """Keep arrivals before this trace time (s)."""
    first_n: int | None = Field(None, ge=1)
    """Keep only the first N requests (after the other transforms)."""
    sample: float | None = Field(None, gt=0, le=1, description="keep each request w.p. this")


class WorkloadConfig(_Model):
    trace: str | None = None
    """Trace file to replay (relative to the scenario file); exactly one of trace, synthetic
    and workflows."""
    format: str = "auto"
    """Trace format: auto (detected), native, azure, mooncake, vidur or burstgpt."""
    synthetic: SyntheticConfig | None = None
    """A generated workload instead of a trace."""
    workflows: WorkflowGenConfig | None = None
    """Generated agent workflows instead of a trace (a workflow trace is given as ``trace``)."""
    transforms: TransformConfig = TransformConfig()
    """Time window, rate scaling, sampling and truncation applied to the request stream."""
    generated_rate: float = Field(4.0, gt=0)
    """Arrival rate (req/s) given to length-only traces (Vidur stats CSVs), Poisson."""

    @model_validator(mode="after")
    def _one_source(self) -> WorkloadConfig:
        given = [k for k in ("trace", "synthetic", "workflows") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("exactly one of 'trace', 'synthetic' or 'workflows' must be given")
        return self


class DeterminismConfig(_Model):
    """How an engine serves requests that need deterministic output (LLM-42, docs/simulator.md):
    not at all (``none``), without dynamic batching, with batch-invariant kernels for every
    step, or with LLM-42's verified speculation."""

    mode: Literal["none", "no_batching", "batch_invariant", "llm42"] = "none"
    """none | no_batching | batch_invariant | llm42."""
    batch_invariant_overhead: float = Field(0.45, ge=0, allow_inf_nan=False)
    """batch_invariant: extra share of every step's time (SGLang's deterministic mode, ~0.45)."""
    window: int = Field(32, ge=1)
    """llm42: tokens decoded between verifications of a request."""
    group: int = Field(8, ge=1)
    """llm42: windows per fixed-shape verification pass."""
    mismatch_rate: float = Field(0.05, ge=0, le=1, allow_inf_nan=False)
    """llm42: share of verified windows with a mismatch (rolled back and decoded again)."""


class EngineConfig(_Model):
    """Engine knobs, named as vLLM names them.

    ``None`` means what vLLM picks by itself, resolved when the instances are built (see
    :func:`fleetsched.engine.defaults.resolve_engine_config`): the token budget and the seat
    count by GPU kind and memory (``vllm serve`` defaults), ``max_model_len`` from the model's
    context length.
    """

    kind: Literal["vllm"] = "vllm"
    """Engine model: ``vllm`` (these knobs, the default) or ``llamacpp`` (LlamaCppConfig)."""

    max_num_batched_tokens: int | None = Field(
        None, ge=16, description="token budget of a step; None = vLLM's default for the GPU"
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="requests in the batch at most; None = vLLM's default for the GPU"
    )
    max_model_len: int | None = Field(
        None, ge=2, description="context length (prompt + output); None = the model's"
    )
    block_tokens: int = Field(16, ge=1)
    """Tokens per KV-cache block (vLLM's block_size)."""
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    """Share of GPU memory for weights, activations and KV cache, as vLLM."""
    enable_prefix_caching: bool = True
    """Reuse cached KV blocks of identical prompt prefixes (automatic prefix caching)."""
    enable_chunked_prefill: bool = True
    """Split long prefills over several steps; off, a prompt must fit one step budget."""
    long_prefill_token_threshold: int = Field(0, ge=0, description="0 = no per-request cap")
    preemption_mode: Literal["recompute", "swap"] = "recompute"
    """What preemption does with the victim's KV: drop and recompute it, or swap it to host."""
    host_link_gbps: float = Field(25.0, gt=0, description="swap bandwidth, GB/s")
    context_switch: Literal["vllm", "fastswitch"] = "vllm"
    """How swaps move KV: vLLM's per-block copies that stall the step, or FastSwitch's block
    groups copied beside compute, host copies reused (docs/simulator.md)."""
    swap_copy_latency_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    """Fixed time of each host-GPU copy (vLLM: 2 x layers copies per block); 0: bandwidth only."""
    swap_group_tokens: int = Field(1024, ge=1)
    """fastswitch: tokens per block group copied as one unit."""
    determinism: DeterminismConfig = DeterminismConfig()
    """How requests that need deterministic output are served."""
    num_gpu_blocks: int | None = Field(None, ge=1, description="override computed KV capacity")
    preemptible_prefill: bool = Field(
        False, description="a long prefill yields mid-step to a more urgent arrival (FlowPrefill)"
    )
    prefill_yield_tokens: int = Field(
        256, ge=1, description="granularity (tokens) at which a preemptible prefill can stop"
    )


class LlamaCppConfig(_Model):
    """llama.cpp's ``llama-server``, knobs named after its command-line options (defaults are
    its defaults). See docs/llamacpp.md for what the engine model does with them."""

    kind: Literal["llamacpp"]
    """``llamacpp`` selects this engine model (docs/llamacpp.md)."""
    parallel: int = Field(4, ge=1, description="--parallel: number of slots")
    ctx: int = Field(8192, ge=16, description="-c: total context, ctx / parallel per slot")
    threads: int = Field(2, ge=1, description="-t: CPU threads (the CPU roofline uses it)")
    n_batch: int = Field(2048, ge=1, description="-b: logical batch (tokens per step)")
    n_ubatch: int = Field(512, ge=1, description="-ub: physical batch (tokens per ubatch)")
    cache_prompt: bool = Field(True, description="reuse a slot's cached prefix (request field)")
    slot_prompt_similarity: float = Field(
        0.1, ge=0, le=1, description="--slot-prompt-similarity: LCP fraction to pick a slot"
    )
    cache_ram_mib: int = Field(8192, ge=-1, description="--cache-ram: -1 no limit, 0 off")
    cache_idle_slots: bool = Field(True, description="--cache-idle-slots")
    swa_full: bool = Field(False, description="--swa-full: full-size sliding-window cache")
    ctx_checkpoints: int = Field(32, ge=0, description="--ctx-checkpoints per slot")
    checkpoint_min_step: int = Field(8192, ge=0, description="--checkpoint-min-step")
    weight_bits: float = Field(16.0, gt=0, description="bits per weight (CPU roofline only)")
    block_tokens: int = Field(16, ge=1, description="prefix-match granularity (hash blocks)")

    @model_validator(mode="after")
    def _check(self) -> LlamaCppConfig:
        if self.ctx < self.parallel:
            raise ValueError(f"ctx ({self.ctx}) must be at least parallel ({self.parallel})")
        return self


def _engine_kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in ("vllm", "llamacpp") else "vllm"


#: An instance group's engine: vLLM-style (default) or llama.cpp-style (``kind: llamacpp``).
AnyEngineConfig = Annotated[
    Annotated[EngineConfig, Tag("vllm")] | Annotated[LlamaCppConfig, Tag("llamacpp")],
    Discriminator(_engine_kind),
]


def _efficiency(description: str) -> Any:
    return Field(None, gt=0, le=1, allow_inf_nan=False, description=description)


def _seconds(description: str) -> Any:
    return Field(None, ge=0, allow_inf_nan=False, description=description)


class PerfConfig(_Model):
    """Knobs of the roofline step-time model (docs/perf.md); ``None`` (the default) takes the
    value calibrated for the group's GPU. Not allowed together with a fitted ``profile``."""

    compute_efficiency: float | None = _efficiency(
        "fraction of the dense BF16 peak that large GEMMs and attention reach"
    )
    compute_half_tokens: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="tokens at which a GEMM reaches half of compute_efficiency",
    )
    bandwidth_efficiency: float | None = _efficiency(
        "fraction of peak memory bandwidth for weight and KV-cache reads"
    )
    gemm_latency_s: float | None = _seconds("fixed time of each GEMM kernel")
    elementwise_bandwidth_efficiency: float | None = _efficiency(
        "fraction of peak memory bandwidth for norm, rotary, activation and residual kernels"
    )
    elementwise_latency_s: float | None = _seconds("fixed time of each elementwise kernel")
    allreduce_latency_s: float | None = _seconds("fixed time of each tensor-parallel all-reduce")
    allreduce_bandwidth_efficiency: float | None = _efficiency(
        "fraction of the GPU-to-GPU bandwidth an all-reduce reaches"
    )
    overhead_s: float | None = _seconds("fixed time per engine step outside the GPU kernels")

    def knobs(self) -> dict[str, float]:
        """The knobs that are set (not ``None``)."""
        return self.model_dump(exclude_none=True)


class KVCompressionConfig(_Model):
    """Non-uniform per-head KV-cache compression (Tangram, docs/perf.md): each KV head keeps its
    own share of the tokens, ``ratio`` on average; ``layout`` is how the engine pages it."""

    ratio: float = Field(gt=0, le=1, allow_inf_nan=False)
    """Mean share of each token's KV that the heads keep (Tangram's --compression-ratio)."""
    layout: Literal["paged", "tangram"] = "paged"
    """paged: a layer's heads share pages, reclaimed after prefill; tangram: Tangram's fix."""
    over_allocation: float | None = Field(None, ge=1, allow_inf_nan=False)
    """Pages held per kept token of the mean head (null: the layout's, 2.76 or 1.0645)."""
    reclaim_fraction: float | None = Field(None, ge=0, lt=1, allow_inf_nan=False)
    """Share of a compute-bound prefill spent reclaiming pages (null: the layout's, 0.25 or 0)."""


class PrecisionConfig(_Model):
    """Numeric precision of an instance group (docs/perf.md, "Precision and KV compression"):
    bytes of weights and KV cache, the tensor-core peak the GEMMs run at. bf16 everywhere (the
    default) is the model as released."""

    weight_dtype: Literal["bf16", "fp8", "int8", "int4"] = "bf16"
    """Transformer-layer weights (embedding and LM head stay bf16); int4: group 128."""
    activation_dtype: Literal["bf16", "fp8", "int8", "int4"] = "bf16"
    """GEMM inputs: bf16 = weight-only quantisation; else W8A8, W4A8, W4A4 (COMET)."""
    kv_dtype: Literal["bf16", "fp8", "int4"] = "bf16"
    """KV cache: 2, 1 or 0.5 bytes per value (+ an fp16 scale and zero per int4 head vector)."""
    kv_dequant_overhead: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Extra time of a quantised KV read, as a share of its bytes' time (null: 0.45 for fp8 on
    FP8 tensor cores, else 1.0)."""
    kv_compression: KVCompressionConfig | None = None
    """Per-head KV compression (null: none)."""


class OffloadConfig(_Model):
    """CPU offload with hybrid attention (APEX, docs/perf.md): KV that does not fit on the GPU
    is kept in host memory and its decode attention runs on the CPU. Dispatch with the ``apex``
    admission policy; without it, requests spill to the host whenever it has room."""

    host_kv_gib: float = Field(gt=0, allow_inf_nan=False)
    """Host memory for KV cache per GPU, GiB (at most the GPU's host share in the catalog)."""
    host_mem_gb_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    """Host memory bandwidth per GPU, GB/s (null: the catalog's host share)."""
    host_cpu_tflops: float | None = Field(None, gt=0, allow_inf_nan=False)
    """Host FP32 vector peak per GPU, TFLOPS (null: the catalog's host share)."""
    bandwidth_efficiency: float = Field(0.5, gt=0, le=1, allow_inf_nan=False)
    """Share of the host bandwidth CPU attention reaches."""
    overlap: bool = True
    """CPU attention runs in parallel with the GPU step (APEX); false: the GPU waits for it."""


class InstanceGroup(_Model):
    name: str = "main"
    """Group name; instances are named <name>-0, <name>-1, ..."""
    gpu: str = Field("H100-SXM", validation_alias=AliasChoices("gpu", "device"))
    """Device of every instance: a GPU (``fleetsched list gpus``), or for a ``llamacpp``
    engine a CPU of the CPU catalog (docs/perf.md); ``device`` is an alias."""
    model: str = "Llama-3.1-8B"
    """Model served (``fleetsched list models``; Hugging Face ids accepted)."""
    tp: int = Field(1, ge=1)
    """Tensor-parallel degree: GPUs per instance, within one node."""
    count: int = Field(1, ge=1)
    """Number of instances in the group."""
    role: Literal["mixed", "prefill", "decode"] = "mixed"
    """Prefill/decode disaggregation role (needs a router that routes by role, e.g. pd_disagg)."""
    engine: AnyEngineConfig = EngineConfig()
    """Engine of every instance: vLLM-style knobs, or ``kind: llamacpp`` for llama.cpp's
    server (docs/llamacpp.md)."""
    profile: str | None = Field(None, description="fitted step-time profile YAML")
    perf: PerfConfig = PerfConfig()
    precision: PrecisionConfig = PrecisionConfig()
    """Weight, activation and KV-cache precision, and KV compression."""
    offload: OffloadConfig | None = None
    """KV cache in host memory with CPU attention (null: none)."""

    @model_validator(mode="after")
    def _perf_or_profile(self) -> InstanceGroup:
        if self.profile is not None and self.perf.knobs():
            raise ValueError(
                f"perf knobs ({', '.join(self.perf.knobs())}) apply to the roofline model "
                "only; this group uses the fitted profile " + repr(self.profile)
            )
        if isinstance(self.engine, LlamaCppConfig) and self.perf.knobs():
            raise ValueError(
                f"perf knobs ({', '.join(self.perf.knobs())}) apply to the GPU roofline of the "
                "vLLM engine, not to a llamacpp engine (fit a profile with fleetsched calibrate)"
            )
        return self


class PolicyRef(_Model):
    name: str
    """Registered policy name (``fleetsched list policies``)."""
    params: dict[str, Any] = {}
    """Keyword arguments of the policy, checked against its signature (see Policy parameters)."""


class PoliciesConfig(_Model):
    router: PolicyRef = PolicyRef(name="round_robin")
    """Which instance each request goes to."""
    admission: PolicyRef = PolicyRef(name="aggressive")
    """Whether the head of an engine's waiting queue may start now."""
    ordering: PolicyRef = PolicyRef(name="fcfs")
    """Order of an engine's waiting queue."""
    preemption: PolicyRef = PolicyRef(name="newest")
    """Which running request an engine preempts when KV memory runs out."""
    retention: PolicyRef = PolicyRef(name="none")
    """Whether an engine keeps finished workflow calls' KV cached across tool gaps."""


class AutoscalingConfig(_Model):
    """A fleet whose replica count changes during the run (one instance group scales)."""

    policy: PolicyRef = PolicyRef(name="static")
    #: The instance group that scales (default: the first); its ``count`` is the start.
    group: str | None = None
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(64, ge=1)
    #: Model weights load at this many GB/s per GPU when a replica starts.
    load_gb_s: float = Field(2.0, gt=0)
    #: Fixed start-up time on top of loading weights (process, CUDA graphs, warm-up).
    startup_s: float = Field(15.0, ge=0)
    #: No scale-down within this many seconds of the previous scaling action.
    scale_down_cooldown_s: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _range(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) > max_replicas")
        return self


class SLOClass(_Model):
    ttft_s: float = Field(2.0, gt=0)
    """Time-to-first-token target, seconds."""
    tpot_s: float = Field(0.1, gt=0)
    """Time-per-output-token target (mean after the first), seconds."""


class Scenario(_Model):
    name: str = "scenario"
    """Name shown in tables and reports."""
    seed: int = 0
    """Seed of every random stream (workload, policies); same seed, same output."""
    workload: WorkloadConfig
    """The requests: a trace or a synthetic generator, with transforms."""
    cluster: list[InstanceGroup] = Field(default_factory=lambda: [InstanceGroup()], min_length=1)
    """Instance groups: GPU, model, tp, count, role and engine knobs of each."""
    policies: PoliciesConfig = PoliciesConfig()
    """Router and engine-local policies, by registered name with parameters."""
    slo_classes: dict[str, SLOClass] = {"default": SLOClass()}
    """SLO targets by class name; requests of an unknown class use "default"."""
    view_refresh_s: float = Field(0.0, ge=0)
    """The router sees instance state refreshed every this many seconds (0 = exact state)."""
    kv_link_gb_s: float = Field(25.0, gt=0)
    """Bandwidth between instances (GB/s) for KV handover (prefill -> decode) and migration."""
    quality: dict[str, dict[str, float]] | None = None
    """Multi-model workloads: task class -> model -> probability of a correct answer (None:
    the default table, from the Llama 3.1 model card; see workload/tasks.py)."""
    stream_prompts: bool = True
    """A prompt that arrives in pieces is sent to the engine with its first piece and
    prefilled as pieces arrive (Stream2LLM); False: sent once complete (vLLM today)."""
    autoscaling: AutoscalingConfig | None = None
    """Scale one instance group during the run (None: a fixed fleet)."""

    @model_validator(mode="after")
    def _probabilities(self) -> Scenario:
        for task, row in (self.quality or {}).items():
            for model, q in row.items():
                if not 0 <= q <= 1:
                    raise ValueError(f"quality.{task}.{model}: expected a probability, got {q}")
        return self

    @model_validator(mode="after")
    def _autoscaled_group(self) -> Scenario:
        a = self.autoscaling
        if a is not None and a.group is not None and a.group not in {g.name for g in self.cluster}:
            raise ValueError(f"autoscaling.group: no instance group named {a.group!r}")
        return self


def _node_line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Line (1-based) of the YAML node at pydantic location ``loc``, or of its nearest parent."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(key):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(key, int)
            and 0 <= key < len(node.value)
        ):
            nxt = node.value[key]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return line


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """A pydantic error location as the user wrote it: without validator names and without the
    engine-kind tag pydantic puts after ``engine`` (``engine.llamacpp.ctx`` is ``engine.ctx``)."""
    out: list[int | str] = []
    for p in loc:
        if isinstance(p, str) and p.startswith("function"):
            continue
        if out and out[-1] == "engine" and p in ("vllm", "llamacpp"):
            continue
        out.append(p)
    return tuple(out)


#: A problem found in a scenario: (field path, message), e.g.
#: ``(("policies", "router", "params", "cache_threshold"), "Input should be a valid number")``.
Problem = tuple[tuple[str | int, ...], str]

#: Checks a validated scenario against what the schema cannot know (registries, catalogs).
ScenarioCheck = Callable[["Scenario"], list[Problem]]


def format_problem(
    loc: tuple[str | int, ...],
    msg: str,
    source: str | None = None,
    root: yaml.Node | None = None,
    count: int = 1,
) -> str:
    """``source:line: field.path: msg`` (the line of ``loc`` in the YAML ``root``), or
    ``field.path: msg`` without a source; ``count > 1`` adds ``(and N more problems)``."""
    path = ".".join(str(p) for p in loc) or "(top level)"
    more = f" (and {count - 1} more problems)" if count > 1 else ""
    if source is None:
        return f"{path}: {msg}{more}"
    line = _node_line(root, loc)
    where = f"{source}:{line}" if line else source
    return f"{where}: {path}: {msg}{more}"


def format_validation_error(err: ValidationError, source: str, root: yaml.Node | None) -> str:
    first = err.errors()[0]
    loc = _clean_loc(first["loc"])
    return format_problem(loc, first["msg"], source, root, err.error_count())


def parse_yaml_model(text: str, source: str, model: type[M], what: str) -> M:
    """Parse YAML ``text`` into pydantic ``model``; errors name ``source:line: field.path``."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"invalid YAML: {getattr(e, 'problem', e)}", f"{source}{line}") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} must be a YAML mapping", source)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InputError(format_validation_error(e, source, root)) from None


def read_text(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise InputError(f"cannot read {what}: {e.strerror}", str(path)) from None


def _check(scenario: Scenario, check: ScenarioCheck | None, text: str, source: str) -> None:
    problems = check(scenario) if check is not None else []
    if problems:
        loc, msg = problems[0]
        raise InputError(format_problem(loc, msg, source, yaml.compose(text), len(problems)))


def parse_scenario(
    text: str, source: str = "<scenario>", check: ScenarioCheck | None = None
) -> Scenario:
    """Parse and validate scenario YAML text; raise :class:`InputError` naming line and field.

    ``check`` (e.g. :func:`fleetsched.sim.check.scenario_problems`) adds checks against the
    policy registries and hardware catalogs, reported the same way."""
    scenario = parse_yaml_model(text, source, Scenario, "a scenario")
    _check(scenario, check, text, source)
    return scenario


def load_scenario(path: str | Path, check: ScenarioCheck | None = None) -> Scenario:
    """Read a scenario file (relative paths in it are relative to its folder); see
    :func:`parse_scenario` for ``check``."""
    p = Path(path)
    text = read_text(p, "scenario")
    scenario = _resolve_paths(parse_scenario(text, str(p)), p.parent)
    _check(scenario, check, text, str(p))
    return scenario


def _resolve_paths(s: Scenario, base: Path) -> Scenario:
    """Make relative file paths (trace, empirical length files, step-time profiles) relative
    to the scenario file's folder when they exist there."""

    def rel(path: str | None) -> str | None:
        if path and not Path(path).is_absolute() and (base / path).exists():
            return str(base / path)
        return path

    wl = s.workload
    wl = wl.model_copy(update={"trace": rel(wl.trace)})
    if wl.synthetic is not None:
        syn = wl.synthetic
        syn = syn.model_copy(
            update={
                "prompt": syn.prompt.model_copy(update={"path": rel(syn.prompt.path)}),
                "output": syn.output.model_copy(update={"path": rel(syn.output.path)}),
            }
        )
        wl = wl.model_copy(update={"synthetic": syn})
    cluster = [g.model_copy(update={"profile": rel(g.profile)}) for g in s.cluster]
    return s.model_copy(update={"workload": wl, "cluster": cluster})


#: Short names accepted by :func:`apply_overrides` for the most varied scenario fields.
OVERRIDE_ALIASES: dict[str, str] = {
    "router": "policies.router.name",
    "admission": "policies.admission.name",
    "ordering": "policies.ordering.name",
    "preemption": "policies.preemption.name",
    "rate_scale": "workload.transforms.rate_scale",
}


def parse_override_value(text: str) -> Any:
    """A command-line value as YAML reads it: ``8`` -> 8, ``0.5`` -> 0.5, ``true``, ``a``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(scenario: Scenario, overrides: dict[str, Any]) -> Scenario:
    """A copy of ``scenario`` with fields set by dotted path, e.g.
    ``{"cluster.0.count": 8, "router": "cache_aware", "cluster.0.engine.max_num_seqs": 128}``.

    List items are addressed by index. Setting a policy's ``name`` (``router=...``) clears its
    ``params`` unless the same overrides set them. The result is validated as a whole; a path
    that does not exist or a value of the wrong type raises :class:`InputError` naming the path.
    """
    data = scenario.model_dump()
    for raw_path, value in overrides.items():
        path = OVERRIDE_ALIASES.get(raw_path, raw_path)
        keys = path.split(".")
        node: Any = data
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            where = ".".join(keys[: depth + 1])
            at = raw_path if where == raw_path else f"{raw_path}: {where}"
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise InputError(f"{at}: no item {key!r} (the list has {len(node)} items)")
                idx: Any = int(key)
            elif isinstance(node, dict):
                if key not in node and not _is_open_mapping(keys[:depth]):
                    known = ", ".join(sorted(node)) or "none"
                    raise InputError(f"{at}: no such field (known: {known})")
                idx = key
            else:
                raise InputError(f"{raw_path}: {'.'.join(keys[:depth])} is not a section")
            if last:
                node[idx] = value
                if key == "name" and len(keys) == 3 and keys[0] == "policies":
                    params_path = ".".join([*keys[:2], "params"])
                    if not any(
                        OVERRIDE_ALIASES.get(p, p).startswith(params_path) for p in overrides
                    ):
                        node["params"] = {}
            else:
                if isinstance(node, dict) and key not in node:
                    node[idx] = {}
                node = node[idx]
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in _clean_loc(first["loc"]))
        raise InputError(first["msg"], loc) from None


def _is_open_mapping(keys: list[str]) -> bool:
    """Whether the section at ``keys`` is a free-form mapping (policy params, SLO classes)."""
    return (
        (len(keys) == 3 and keys[0] == "policies" and keys[2] == "params")
        or (len(keys) == 1 and keys[0] in ("slo_classes", "quality"))
        or (len(keys) == 2 and keys[0] == "quality")
    )
