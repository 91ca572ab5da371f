"""The live gateway: an OpenAI-compatible router in front of real engines, routing every
request with the simulator's own policy objects (see ``docs/gateway.md``)."""

from fleetsched.gateway.app import Gateway
from fleetsched.gateway.config import GatewayConfig, config_from, hash_key, load_gateway_config
from fleetsched.gateway.server import run, serve

__all__ = [
    "Gateway",
    "GatewayConfig",
    "config_from",
    "hash_key",
    "load_gateway_config",
    "run",
    "serve",
]
