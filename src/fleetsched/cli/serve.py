"""``fleetsched serve``: the OpenAI-compatible gateway, routing with the simulator's policies."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fleetsched.cli.app import app, print_error
from fleetsched.errors import InputError

EXAMPLES = """
Examples:

  fleetsched serve --backends http://127.0.0.1:8001,http://127.0.0.1:8002 --router cache_aware

  fleetsched serve --config gateway.yaml --port 8080 --workers 2

  curl localhost:8080/v1/completions -d '{"prompt": "Hello", "max_tokens": 8, "stream": true}'
"""

Opt = typer.Option


@app.command(epilog=EXAMPLES)
def serve(
    backends: Annotated[
        str | None, Opt(help="Comma-separated backend URLs (http://host:port).")
    ] = None,
    config: Annotated[
        Path | None, Opt("--config", "-c", help="Gateway config file (YAML).")
    ] = None,
    router: Annotated[str | None, Opt(help="Routing policy (default: the config's).")] = None,
    host: Annotated[str | None, Opt(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, Opt(help="Port (0 picks a free one; default 8080).")] = None,
    workers: Annotated[int | None, Opt(help="Worker processes sharing the port.")] = None,
    scrape_ms: Annotated[
        float | None, Opt(help="Scrape each backend's /metrics every this many ms.")
    ] = None,
    access_log: Annotated[
        str | None, Opt(help="One JSON line per request to this file ('-': stdout).")
    ] = None,
    seed: Annotated[int | None, Opt(help="Seed of the router's random choices.")] = None,
) -> None:
    """Serve an OpenAI-compatible gateway in front of engines (vLLM, SGLang, llama.cpp, the
    emulator) that routes every request with a routing policy of the simulator, unchanged."""
    from fleetsched.gateway.config import config_from, load_gateway_config
    from fleetsched.gateway.server import run

    if (backends is None) == (config is None):
        raise InputError("give exactly one of --backends or --config")
    if config is not None:
        if not config.exists():
            raise InputError("no such config file", str(config))
        data: dict[str, Any] = load_gateway_config(config).model_dump(exclude_unset=True)
    else:
        assert backends is not None
        urls = [u.strip() for u in backends.split(",") if u.strip()]
        if not urls:
            raise InputError("--backends: no URL given")
        data = {"backends": [{"url": u} for u in urls]}
    if router is not None:
        data["router"] = {"name": router}
    for key, value in (("host", host), ("port", port), ("workers", workers), ("seed", seed),
                       ("access_log", access_log)):  # fmt: skip
        if value is not None:
            data[key] = value
    if scrape_ms is not None:
        if scrape_ms <= 0:
            raise InputError("--scrape-ms must be > 0")
        data["scrape"] = {**(data.get("scrape") or {}), "interval_s": scrape_ms / 1000.0}
    cfg = config_from(data)
    try:
        code = run(cfg, str(config) if config is not None else None)
    except OSError as err:
        print_error(f"--port: cannot listen on {cfg.host}:{cfg.port}: {err.strerror or err}")
        sys.exit(2)
    raise typer.Exit(code)
