"""Start real engines on this machine for tests, demos and calibration (llama.cpp today)."""

from fleetsched.launch.llamacpp import LlamaServer, default_gguf, llama_server_binary

__all__ = ["LlamaServer", "default_gguf", "llama_server_binary"]
