"""Discrete-event fleet simulator: arrivals -> router -> instances -> records."""

from fleetsched.sim.kernel import Simulator
from fleetsched.sim.run import SimResult, simulate

__all__ = ["SimResult", "Simulator", "simulate"]
