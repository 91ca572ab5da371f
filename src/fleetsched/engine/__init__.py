"""One serving instance as vLLM v1 schedules it."""

from fleetsched.engine.instance import EngineStats, Instance
from fleetsched.engine.kv_cache import KVCache
from fleetsched.engine.sequence import Seq

__all__ = ["EngineStats", "Instance", "KVCache", "Seq"]
