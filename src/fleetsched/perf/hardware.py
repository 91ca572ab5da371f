"""GPU catalog: the few datasheet figures a roofline step-time model needs.

Units: FLOP/s, bytes/s and bytes. Conventions used for every entry:

- ``bf16_flops`` is the *dense* BF16 tensor-core peak (datasheets often print the 2:4-sparsity
  figure first; that is twice the dense one and is not used here).
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
- ``gpus_per_node`` is the largest common server of that GPU (8 for every entry here: HGX /
  DGX H100, H200 and A100 boards, AMD's MI300X platform, and the largest AWS instances with
  A10G (g5.48xlarge) and L40S (g6e.48xlarge)); a tensor-parallel group must fit in one node.
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


GPUS: dict[str, GPU] = {
    # NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column): BF16 1,979 TFLOPS with sparsity
    # -> 989 dense; HBM3 80 GB at 3.35 TB/s; NVLink 900 GB/s (bidirectional) -> 450 GB/s per
    # direction; PCIe Gen5 128 GB/s (bidirectional) -> 64 GB/s.
    "H100-SXM": GPU(
        name="H100-SXM",
        bf16_flops=989 * _TFLOPS,
        mem_bw_bytes_s=3.35e12,
        mem_bytes=80 * GiB,
        interconnect_bw_bytes_s=450 * _GB,
        host_link_bw_bytes_s=64 * _GB,
    ),
    # NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column): BF16 1,979 TFLOPS with sparsity
    # -> 989 dense; HBM3e 141 GB at 4.8 TB/s; NVLink 900 GB/s -> 450; PCIe Gen5 128 GB/s -> 64.
    "H200": GPU(
        name="H200",
        bf16_flops=989 * _TFLOPS,
        mem_bw_bytes_s=4.8e12,
        mem_bytes=141 * GiB,
        interconnect_bw_bytes_s=450 * _GB,
        host_link_bw_bytes_s=64 * _GB,
    ),
    # NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM column): BF16 312 TFLOPS dense
    # (624 sparse); HBM2e 80 GB at 2,039 GB/s; NVLink 600 GB/s -> 300; PCIe Gen4 64 GB/s -> 32.
    "A100-80GB": GPU(
        name="A100-80GB",
        bf16_flops=312 * _TFLOPS,
        mem_bw_bytes_s=2.039e12,
        mem_bytes=80 * GiB,
        interconnect_bw_bytes_s=300 * _GB,
        host_link_bw_bytes_s=32 * _GB,
    ),
    # NVIDIA A100 Tensor Core GPU datasheet (A100 40GB SXM column): BF16 312 TFLOPS dense;
    # HBM2 40 GB at 1,555 GB/s; NVLink 600 GB/s -> 300; PCIe Gen4 64 GB/s -> 32.
    "A100-40GB": GPU(
        name="A100-40GB",
        bf16_flops=312 * _TFLOPS,
        mem_bw_bytes_s=1.555e12,
        mem_bytes=40 * GiB,
        interconnect_bw_bytes_s=300 * _GB,
        host_link_bw_bytes_s=32 * _GB,
    ),
    # NVIDIA A40 datasheet: BF16 tensor 149.7 TFLOPS dense (299.4 sparse); GDDR6 48 GB at
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
    ),
    # NVIDIA L40S datasheet: BF16 tensor 362.05 TFLOPS dense (733 sparse); GDDR6 48 GB at
    # 864 GB/s; no NVLink, so GPU-to-GPU goes over PCIe Gen4 x16 64 GB/s (bidir.) -> 32.
    "L40S": GPU(
        name="L40S",
        bf16_flops=362.05 * _TFLOPS,
        mem_bw_bytes_s=864 * _GB,
        mem_bytes=48 * GiB,
        interconnect_bw_bytes_s=32 * _GB,
        host_link_bw_bytes_s=32 * _GB,
    ),
    # NVIDIA A10G (AWS EC2 G5). NVIDIA publishes no A10G datasheet. Memory is the A10's (NVIDIA
    # A10 datasheet: GDDR6 24 GB at 600 GB/s, PCIe Gen4 64 GB/s -> 32, no NVLink). Tensor
    # throughput is lower than the A10's 125 TFLOPS: 70 TFLOPS dense FP16/BF16 as published in
    # AWS-reported A10 vs A10G comparisons (e.g. Baseten, "NVIDIA A10 vs A10G for ML model
    # inference"). Decode is memory-bound on this card, so the FLOPS figure matters little.
    "A10G": GPU(
        name="A10G",
        bf16_flops=70 * _TFLOPS,
        mem_bw_bytes_s=600 * _GB,
        mem_bytes=24 * GiB,
        interconnect_bw_bytes_s=32 * _GB,
        host_link_bw_bytes_s=32 * _GB,
    ),
    # AMD Instinct MI300X datasheet: BF16 1,307.4 TFLOPS dense (2,614.9 sparse); HBM3 192 GB at
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
