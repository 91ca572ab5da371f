"""GPU catalog: the few datasheet figures a roofline step-time model needs.

Units: FLOP/s, bytes/s and bytes. Conventions used for every entry:

- ``bf16_flops`` is the *dense* BF16 tensor-core peak (datasheets often print the 2:4-sparsity
  figure first; that is twice the dense one and is not used here). The T4 (Turing) has no BF16:
  its figure is the FP16 tensor-core peak, the precision models are served in there.
- ``fp8_flops``, ``int8_ops`` and ``int4_ops`` are the dense FP8, INT8 and INT4 tensor-core
  peaks (FLOP/s or OP/s), ``0.0`` where the GPU has no tensor cores for that type (FP8 needs
  Hopper, Ada or CDNA3; INT4 was dropped after Ampere/Ada: H100, H200 and MI300X have none).
  :mod:`fleetsched.perf.precision` picks the one a quantised model's GEMMs run at.
- ``host_mem_bw_bytes_s``, ``host_cpu_flops`` and ``host_mem_bytes`` are one GPU's share of
  the host of its common server (the node's DRAM bandwidth, FP32 vector peak and memory divided
  by its GPUs): what CPU offload (:mod:`fleetsched.perf.offload`) can use. ``0`` where no host is
  catalogued; a scenario can then give them.
- Bandwidths are decimal (1 GB/s = 1e9 B/s), as datasheets print them.
- ``mem_bytes`` takes the datasheet "GB" of HBM/GDDR capacity as GiB (2**30 B): DRAM capacity
  is binary (e.g. H100 = 5 HBM3 stacks x 16 GiB) and this is within ~1% of what the CUDA/ROCm
  runtime reports as total memory, which is what vLLM multiplies by
  ``gpu_memory_utilization``.
- ``interconnect_bw_bytes_s`` is the per-GPU GPU-to-GPU bandwidth in *one direction* (datasheets
  print NVLink / Infinity Fabric as the bidirectional total; we halve it). GPUs without a
  GPU-to-GPU fabric use PCIe.
- ``host_link_bw_bytes_s`` is the PCIe x16 link to the host, one direction (Gen4 = 32 GB/s,
  Gen5 = 64 GB/s; datasheets print 64 / 128 GB/s bidirectional).
- ``gpus_per_node`` is the largest common server of that GPU (8 for HGX / DGX H100, H200 and
  A100 boards, AMD's MI300X platform, and the largest AWS instances with A10G (g5.48xlarge),
  L40S (g6e.48xlarge) and T4 (g4dn.metal); 4 for the A10); a tensor-parallel group must fit
  in one node.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetsched.errors import InputError

GiB = 2**30
_GB = 1e9
_TFLOPS = 1e12


@dataclass(frozen=True, slots=True)
class GPU:
    """One accelerator's peak figures (see the module docstring for units and conventions)."""

    name: str
    bf16_flops: float
    mem_bw_bytes_s: float
    mem_bytes: int
    interconnect_bw_bytes_s: float
    host_link_bw_bytes_s: float
    gpus_per_node: int = 8
    fp8_flops: float = 0.0
    int8_ops: float = 0.0
    int4_ops: float = 0.0
    host_mem_bw_bytes_s: float = 0.0
    host_cpu_flops: float = 0.0
    host_mem_bytes: int = 0

    def __post_init__(self) -> None:
        for field in (
            "bf16_flops",
            "mem_bw_bytes_s",
            "mem_bytes",
            "interconnect_bw_bytes_s",
            "host_link_bw_bytes_s",
            "gpus_per_node",
        ):
            value = getattr(self, field)
            if not value > 0:
                raise InputError(f"GPU {self.name!r}: {field} must be > 0, got {value!r}")
        for field in (
            "fp8_flops",
            "int8_ops",
            "int4_ops",
            "host_mem_bw_bytes_s",
            "host_cpu_flops",
            "host_mem_bytes",
        ):
            value = getattr(self, field)
            if not value >= 0:
                raise InputError(f"GPU {self.name!r}: {field} must be >= 0, got {value!r}")

    def peak(self, dtype: str) -> float:
        """Dense tensor-core peak for GEMM inputs of ``dtype`` (bf16, fp8, int8, int4); 0.0 if
        the GPU has no tensor cores for it."""
        return {
            "bf16": self.bf16_flops,
            "fp8": self.fp8_flops,
            "int8": self.int8_ops,
            "int4": self.int4_ops,
        }[dtype]


GPUS: dict[str, GPU] = {
    # NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column): BF16 1,979 TFLOPS with sparsity
    # -> 989 dense; FP8 3,958 TFLOPS and INT8 3,958 TOPS with sparsity -> 1,979 dense (no INT4
    # tensor cores); HBM3 80 GB at 3.35 TB/s; NVLink 900 GB/s (bidirectional) -> 450 GB/s per
    # direction; PCIe Gen5 128 GB/s (bidirectional) -> 64 GB/s. Host (NVIDIA DGX H100 datasheet:
    # 2x Xeon Platinum 8480C, 56 cores at 2.0 GHz, 2 TB DDR5; 8 channels of DDR5-4800 per socket
    # = 614.4 GB/s; AVX-512, 2 FMA units: 64 FP32 FLOP/cycle/core = 14.3 TFLOPS) / 8 GPUs.
    "H100-SXM": GPU(
        name="H100-SXM",
        bf16_flops=989 * _TFLOPS,
        mem_bw_bytes_s=3.35e12,
        mem_bytes=80 * GiB,
        interconnect_bw_bytes_s=450 * _GB,
        host_link_bw_bytes_s=64 * _GB,
        fp8_flops=1979 * _TFLOPS,
        int8_ops=1979 * _TFLOPS,
        host_mem_bw_bytes_s=614.4 * _GB / 8,
        host_cpu_flops=112 * 2.0e9 * 64 / 8,
        host_mem_bytes=2048 * GiB // 8,
    ),
    # NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column): BF16 1,979 TFLOPS with sparsity
    # -> 989 dense; FP8 3,958 TFLOPS / INT8 3,958 TOPS sparse -> 1,979 dense; HBM3e 141 GB at
    # 4.8 TB/s; NVLink 900 GB/s -> 450; PCIe Gen5 128 GB/s -> 64.
    "H200": GPU(
        name="H200",
        bf16_flops=989 * _TFLOPS,
        mem_bw_bytes_s=4.8e12,
        mem_bytes=141 * GiB,
        interconnect_bw_bytes_s=450 * _GB,
        host_link_bw_bytes_s=64 * _GB,
        fp8_flops=1979 * _TFLOPS,
        int8_ops=1979 * _TFLOPS,
    ),
    # NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM column): BF16 312 TFLOPS dense
    # (624 sparse); INT8 624 TOPS, INT4 1,248 TOPS dense (no FP8); HBM2e 80 GB at 2,039 GB/s;
    # NVLink 600 GB/s -> 300; PCIe Gen4 64 GB/s -> 32. Host (NVIDIA DGX A100 datasheet: 2x AMD
    # EPYC 7742, 64 cores at 2.25 GHz, 1 TB; 8 channels of DDR4-3200 per socket = 409.6 GB/s;
    # AVX2, 2 FMA units: 32 FP32 FLOP/cycle/core = 9.2 TFLOPS) / 8 GPUs.
    "A100-80GB": GPU(
        name="A100-80GB",
        bf16_flops=312 * _TFLOPS,
        mem_bw_bytes_s=2.039e12,
        mem_bytes=80 * GiB,
        interconnect_bw_bytes_s=300 * _GB,
        host_link_bw_bytes_s=32 * _GB,
        int8_ops=624 * _TFLOPS,
        int4_ops=1248 * _TFLOPS,
        host_mem_bw_bytes_s=409.6 * _GB / 8,
        host_cpu_flops=128 * 2.25e9 * 32 / 8,
        host_mem_bytes=1024 * GiB // 8,
    ),
    # NVIDIA A100 Tensor Core GPU datasheet (A100 40GB SXM column): BF16 312 TFLOPS dense;
    # INT8 624 / INT4 1,248 TOPS dense; HBM2 40 GB at 1,555 GB/s; NVLink 600 GB/s -> 300; PCIe
    # Gen4 64 GB/s -> 32.
    "A100-40GB": GPU(
        name="A100-40GB",
        bf16_flops=312 * _TFLOPS,
        mem_bw_bytes_s=1.555e12,
        mem_bytes=40 * GiB,
        interconnect_bw_bytes_s=300 * _GB,
        host_link_bw_bytes_s=32 * _GB,
        int8_ops=624 * _TFLOPS,
        int4_ops=1248 * _TFLOPS,
    ),
    # NVIDIA A40 datasheet: BF16 tensor 149.7 TFLOPS dense (299.4 sparse); INT8 299.3 TOPS and
    # INT4 598.7 TOPS dense (598.6 / 1,197.4 sparse), no FP8; GDDR6 48 GB at
    # 696 GB/s; PCIe Gen4 x16 64 GB/s (bidir.) -> 32. An optional NVLink bridge joins pairs of
    # A40s at 112.5 GB/s (bidir.); a TP group beyond a pair goes over PCIe, which is the figure
    # used here.
    "A40": GPU(
        name="A40",
        bf16_flops=149.7 * _TFLOPS,
        mem_bw_bytes_s=696 * _GB,
        mem_bytes=48 * GiB,
        interconnect_bw_bytes_s=32 * _GB,
        host_link_bw_bytes_s=32 * _GB,
        int8_ops=299.3 * _TFLOPS,
        int4_ops=598.7 * _TFLOPS,
    ),
    # NVIDIA L40S datasheet: BF16 tensor 362.05 TFLOPS dense (733 sparse); FP8 733 TFLOPS, INT8
    # 733 TOPS and INT4 733 TOPS dense (1,466 sparse each); GDDR6 48 GB at 864 GB/s; no NVLink,
    # so GPU-to-GPU goes over PCIe Gen4 x16 64 GB/s (bidir.) -> 32.
    "L40S": GPU(
        name="L40S",
        bf16_flops=362.05 * _TFLOPS,
        mem_bw_bytes_s=864 * _GB,
        mem_bytes=48 * GiB,
        interconnect_bw_bytes_s=32 * _GB,
        host_link_bw_bytes_s=32 * _GB,
        fp8_flops=733 * _TFLOPS,
        int8_ops=733 * _TFLOPS,
        int4_ops=733 * _TFLOPS,
    ),
    # NVIDIA A10G (AWS EC2 G5). NVIDIA publishes no A10G datasheet. Memory is the A10's (NVIDIA
    # A10 datasheet: GDDR6 24 GB at 600 GB/s, PCIe Gen4 64 GB/s -> 32, no NVLink). Tensor
    # throughput is lower than the A10's 125 TFLOPS: 70 TFLOPS dense FP16/BF16 as published in
    # AWS-reported A10 vs A10G comparisons (e.g. Baseten, "NVIDIA A10 vs A10G for ML model
    # inference"). Decode is memory-bound on this card, so the FLOPS figure matters little.
    # INT8 and INT4 are not published either: the A10's ratios (2x and 4x its BF16 peak) are
    # assumed, 140 and 280 TOPS. Host (AWS g5.48xlarge: 2x AMD EPYC 7R32, 96 cores at 2.8 GHz,
    # 768 GiB; 8 channels of DDR4-3200 per socket = 409.6 GB/s; 32 FP32 FLOP/cycle/core) / 8.
    "A10G": GPU(
        name="A10G",
        bf16_flops=70 * _TFLOPS,
        mem_bw_bytes_s=600 * _GB,
        mem_bytes=24 * GiB,
        interconnect_bw_bytes_s=32 * _GB,
        host_link_bw_bytes_s=32 * _GB,
        int8_ops=140 * _TFLOPS,
        int4_ops=280 * _TFLOPS,
        host_mem_bw_bytes_s=409.6 * _GB / 8,
        host_cpu_flops=96 * 2.8e9 * 32 / 8,
        host_mem_bytes=768 * GiB // 8,
    ),
    # NVIDIA A10 Tensor Core GPU datasheet: BF16 tensor 125 TFLOPS dense (250 sparse), INT8
    # 250 TOPS and INT4 500 TOPS dense (500 / 1,000 sparse), no FP8; GDDR6 24 GB at 600 GB/s;
    # PCIe Gen4 64 GB/s (bidir.) -> 32, no NVLink. Node: 4 GPUs, Oracle BM.GPU.A10.4 (2x Xeon
    # Platinum 8358, 64 cores at 2.6 GHz, 1 TB; 8 channels of DDR4-3200 per socket = 409.6 GB/s;
    # AVX-512, 64 FP32 FLOP/cycle/core); host / 4.
    "A10": GPU(
        name="A10",
        bf16_flops=125 * _TFLOPS,
        mem_bw_bytes_s=600 * _GB,
        mem_bytes=24 * GiB,
        interconnect_bw_bytes_s=32 * _GB,
        host_link_bw_bytes_s=32 * _GB,
        gpus_per_node=4,
        int8_ops=250 * _TFLOPS,
        int4_ops=500 * _TFLOPS,
        host_mem_bw_bytes_s=409.6 * _GB / 4,
        host_cpu_flops=64 * 2.6e9 * 64 / 4,
        host_mem_bytes=1024 * GiB // 4,
    ),
    # NVIDIA T4 Tensor Core GPU datasheet: mixed-precision FP16/FP32 65 TFLOPS (Turing has no
    # BF16, so this FP16 peak stands in for it), INT8 130 TOPS, INT4 260 TOPS (no FP8); GDDR6
    # 16 GB at 320 GB/s; PCIe Gen3 x16 32 GB/s (bidir.) -> 16, no NVLink. Node: 8 GPUs, AWS
    # g4dn.metal (2x Xeon Platinum 8259CL, 48 cores at 2.5 GHz, 384 GiB; 6 channels of
    # DDR4-2933 per socket = 281.6 GB/s; AVX-512, 64 FP32 FLOP/cycle/core); host / 8.
    "T4": GPU(
        name="T4",
        bf16_flops=65 * _TFLOPS,
        mem_bw_bytes_s=320 * _GB,
        mem_bytes=16 * GiB,
        interconnect_bw_bytes_s=16 * _GB,
        host_link_bw_bytes_s=16 * _GB,
        int8_ops=130 * _TFLOPS,
        int4_ops=260 * _TFLOPS,
        host_mem_bw_bytes_s=281.6 * _GB / 8,
        host_cpu_flops=48 * 2.5e9 * 64 / 8,
        host_mem_bytes=384 * GiB // 8,
    ),
    # AMD Instinct MI300X datasheet: BF16 1,307.4 TFLOPS dense (2,614.9 sparse); FP8 2,614.9
    # TFLOPS and INT8 2,614.9 TOPS dense (no INT4); HBM3 192 GB at
    # 5.3 TB/s; 7 Infinity Fabric links x 128 GB/s (bidir.) = 896 GB/s -> 448 per direction
    # (aggregate over all 7 peers of an 8-GPU node: a 2-GPU TP group gets one link, 64 GB/s);
    # PCIe Gen5 x16 128 GB/s -> 64.
    "MI300X": GPU(
        name="MI300X",
        bf16_flops=1307.4 * _TFLOPS,
        mem_bw_bytes_s=5.3e12,
        mem_bytes=192 * GiB,
        interconnect_bw_bytes_s=448 * _GB,
        host_link_bw_bytes_s=64 * _GB,
        fp8_flops=2614.9 * _TFLOPS,
        int8_ops=2614.9 * _TFLOPS,
    ),
}

#: Other spellings accepted by :func:`get_gpu` (lower case) -> catalog name.
GPU_ALIASES: dict[str, str] = {
    "h100": "H100-SXM",
    "h100-sxm5": "H100-SXM",
    "h100-80gb": "H100-SXM",
    "h200-sxm": "H200",
    "a100": "A100-80GB",
    "a100-sxm-80gb": "A100-80GB",
    "a100-sxm-40gb": "A100-40GB",
}

_GPU_INDEX: dict[str, GPU] = {name.lower(): gpu for name, gpu in GPUS.items()}


def get_gpu(name: str) -> GPU:
    """Look a GPU up by catalog name or alias, case-insensitively.

    Raises :class:`~fleetsched.errors.InputError` listing the known names if there is no match.
    """
    key = name.strip().lower()
    key = GPU_ALIASES.get(key, key).lower()
    gpu = _GPU_INDEX.get(key)
    if gpu is None:
        raise InputError(f"unknown GPU {name!r}; known GPUs: {', '.join(GPUS)}")
    return gpu
