"""Plain data types shared by every layer."""

from fleetsched.core.request import Request
from fleetsched.core.views import InstanceView, RequestView

__all__ = ["InstanceView", "Request", "RequestView"]
