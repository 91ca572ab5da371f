"""Step-time models for one LLM serving engine step: a roofline over hardware and model catalogs,
or a profile fitted to measurements. See docs/perf.md."""

from fleetsched.perf.hardware import GPU, GPUS, get_gpu
from fleetsched.perf.kv_compression import KV_LAYOUTS, KVCompression
from fleetsched.perf.models import MODELS, ModelSpec, get_model
from fleetsched.perf.precision import Precision, weight_bytes
from fleetsched.perf.profile import FittedProfile, fit_profile, load_profile, parse_profile
from fleetsched.perf.roofline import (
    RooflineModel,
    default_activation_reserve_bytes,
    kv_bytes_per_token_per_gpu,
    kv_capacity_blocks,
)
from fleetsched.perf.step_model import StepTimeModel, build_step_model

__all__ = [
    "GPU",
    "GPUS",
    "KV_LAYOUTS",
    "MODELS",
    "FittedProfile",
    "KVCompression",
    "ModelSpec",
    "Precision",
    "RooflineModel",
    "StepTimeModel",
    "build_step_model",
    "default_activation_reserve_bytes",
    "fit_profile",
    "get_gpu",
    "get_model",
    "kv_bytes_per_token_per_gpu",
    "kv_capacity_blocks",
    "load_profile",
    "parse_profile",
    "weight_bytes",
]
