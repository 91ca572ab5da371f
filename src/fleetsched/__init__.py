"""fleetsched: one library of LLM-serving scheduling policies, a fleet simulator and a gateway."""

from fleetsched.errors import FleetschedError, InputError

__version__ = "0.1.0"
__all__ = ["FleetschedError", "InputError", "__version__"]
