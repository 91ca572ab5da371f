"""An OpenAI-compatible engine whose timing is the simulator's own engine model, driven by the
wall clock (for tests, demos and live-vs-simulated checks)."""

from fleetsched.emulator.engine import EngineLoop, Stream
from fleetsched.emulator.server import Emulator, build_emulator, make_app, start

__all__ = ["Emulator", "EngineLoop", "Stream", "build_emulator", "make_app", "start"]
