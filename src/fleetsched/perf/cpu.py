"""CPU catalog: the figures a roofline of a CPU inference engine (llama.cpp) needs.

A CPU is not a GPU with smaller numbers: llama.cpp runs a forward pass on ``threads`` cores,
reads every weight once per micro-batch from DRAM (whose bandwidth the whole socket shares),
and computes with SIMD FMA units. Units: FLOP/s, bytes/s, bytes.

- ``fp32_flops_per_core`` is the SIMD FP32 FMA peak of one core at base clock:
  ``FMA pipes x lanes x 2 FLOP x clock``. Quantized llama.cpp kernels run integer dot products
  and reach a fraction of it; the roofline's ``compute_efficiency`` (or a fitted profile)
  accounts for that.
- ``mem_bw_bytes_s`` is the DRAM bandwidth the engine can use: the socket's datasheet figure
  (channels x transfer rate x 8 bytes) for bare-metal entries, a measurement for virtual
  machines, which get an unknown share of the socket.
- ``cores`` are physical cores (vCPUs for a virtual machine).
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetsched.errors import InputError

GiB = 2**30
_GB = 1e9
_GHZ = 1e9


@dataclass(frozen=True, slots=True)
class CPU:
    """One CPU (socket, or the vCPUs of a virtual machine); see the module docstring."""

    name: str
    cores: int
    fp32_flops_per_core: float
    mem_bw_bytes_s: float
    mem_bytes: int
    source: str = ""

    def __post_init__(self) -> None:
        for field in ("cores", "fp32_flops_per_core", "mem_bw_bytes_s", "mem_bytes"):
            value = getattr(self, field)
            if not value > 0:
                raise InputError(f"CPU {self.name!r}: {field} must be > 0, got {value!r}")


CPUS: dict[str, CPU] = {
    # AMD EPYC 7763 (Zen 3 "Milan") product page: 64 cores, 2.45 GHz base, 8 channels of
    # DDR4-3200 -> 8 x 25.6 = 204.8 GB/s. Zen 3: two 256-bit FMA pipes -> 2 x 8 x 2 = 32 FP32
    # FLOP/cycle -> 78.4 GFLOP/s per core at base clock.
    "EPYC-7763": CPU(
        name="EPYC-7763",
        cores=64,
        fp32_flops_per_core=32 * 2.45 * _GHZ,
        mem_bw_bytes_s=204.8 * _GB,
        mem_bytes=512 * GiB,
        source="AMD EPYC 7763 product page; Zen 3 FMA width",
    ),
    # AMD EPYC 9654 (Zen 4 "Genoa") product page: 96 cores, 2.4 GHz base, 12 channels of
    # DDR5-4800 -> 12 x 38.4 = 460.8 GB/s. Zen 4 runs AVX-512 on two 256-bit FMA pipes ->
    # 32 FP32 FLOP/cycle -> 76.8 GFLOP/s per core at base clock.
    "EPYC-9654": CPU(
        name="EPYC-9654",
        cores=96,
        fp32_flops_per_core=32 * 2.4 * _GHZ,
        mem_bw_bytes_s=460.8 * _GB,
        mem_bytes=768 * GiB,
        source="AMD EPYC 9654 product page; Zen 4 FMA width",
    ),
    # Intel Xeon Platinum 8480+ (Sapphire Rapids) ARK: 56 cores, 2.0 GHz base, 8 channels of
    # DDR5-4800 -> 307.2 GB/s. Two AVX-512 FMA units -> 2 x 16 x 2 = 64 FP32 FLOP/cycle ->
    # 128 GFLOP/s per core at base clock (AMX tiles not counted; llama.cpp builds here disable
    # them).
    "Xeon-8480+": CPU(
        name="Xeon-8480+",
        cores=56,
        fp32_flops_per_core=64 * 2.0 * _GHZ,
        mem_bw_bytes_s=307.2 * _GB,
        mem_bytes=512 * GiB,
        source="Intel ARK Xeon Platinum 8480+; AVX-512 FMA width",
    ),
    # The 2-vCPU KVM guest this project is developed on: an AMD EPYC of family 25 model 1
    # (Zen 3 "Milan"), TSC 2.445 GHz (BogoMIPS 4890.8 / 2) -> 32 x 2.445 = 78.2 GFLOP/s per
    # core; 24 GB of RAM. Its share of the socket's DRAM bandwidth is measured, not known:
    # 9.6 GB/s is the median of 5 runs of `numpy.copyto` on 512 MiB arrays (bytes read +
    # written / time) on one core, see docs/llamacpp.md.
    "EPYC-Milan-2vCPU": CPU(
        name="EPYC-Milan-2vCPU",
        cores=2,
        fp32_flops_per_core=32 * 2.445 * _GHZ,
        mem_bw_bytes_s=9.6 * _GB,
        mem_bytes=24 * GiB,
        source="lscpu of the KVM guest (Zen 3, 2.445 GHz); memory bandwidth measured",
    ),
}

#: Other spellings accepted by :func:`get_cpu` (lower case) -> catalog name.
CPU_ALIASES: dict[str, str] = {
    "cpu": "EPYC-Milan-2vCPU",
    "host": "EPYC-Milan-2vCPU",
    "epyc-milan": "EPYC-7763",
    "epyc-genoa": "EPYC-9654",
    "sapphire-rapids": "Xeon-8480+",
}

_CPU_INDEX: dict[str, CPU] = {name.lower(): cpu for name, cpu in CPUS.items()}


def find_cpu(name: str) -> CPU | None:
    """The catalog CPU called ``name`` (or an alias), case-insensitively, else None."""
    key = name.strip().lower()
    return _CPU_INDEX.get(CPU_ALIASES.get(key, key).lower())


def get_cpu(name: str) -> CPU:
    """Look a CPU up by catalog name or alias; :class:`InputError` listing the catalog if none."""
    cpu = find_cpu(name)
    if cpu is None:
        raise InputError(f"unknown CPU {name!r}; known CPUs: {', '.join(CPUS)}")
    return cpu
