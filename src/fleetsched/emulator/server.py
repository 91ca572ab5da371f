"""The emulator's HTTP adapter: vLLM's OpenAI-compatible endpoints over :class:`EngineLoop`.

A thin layer, like vLLM's ``entrypoints/openai`` over ``AsyncLLM``: parse and check the
request (:mod:`fleetsched.api.request`), count its prompt with the documented tokenizer (or
take the token ids as sent), submit it to the engine loop, then stream one SSE chunk per token
as the engine produces them. Endpoints: ``POST /v1/completions``, ``POST
/v1/chat/completions``, ``GET /v1/models``, ``GET /health``, ``GET /version``, ``POST
/tokenize``, ``POST /detokenize``, ``GET /metrics``. A client disconnect cancels the handler
(aiohttp ``handler_cancellation``), which aborts the request in the engine and frees its KV.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fleetsched import __version__
from fleetsched.api import tokenizer
from fleetsched.api.errors import APIError, bad_request
from fleetsched.api.request import GenerationRequest, load_json_object, parse_request
from fleetsched.api.sse import DONE, sse_data
from fleetsched.core.config import InstanceGroup, PoliciesConfig, SLOClass
from fleetsched.emulator.engine import EngineLoop, Stream
from fleetsched.emulator.metrics import EmulatorMetrics
from fleetsched.engine.instance import Instance
from fleetsched.errors import InputError

log = logging.getLogger("fleetsched.emulator")

#: Largest request body accepted (a 128k-token prompt as token ids is about 0.8 MB).
MAX_BODY_BYTES = 64 * 1024 * 1024

# Token text as JSON strings (vocabulary words are plain ASCII: no escaping needed).
_PIECE_JSON: tuple[bytes, ...] = tuple(b'" ' + w.encode() + b'"' for w in tokenizer.WORDS)


@dataclass(slots=True)
class Emulator:
    """One emulated engine: the instance, its real-time loop, its metrics and what it serves."""

    instance: Instance
    loop: EngineLoop
    metrics: EmulatorMetrics
    served_model_name: str
    max_model_len: int
    info: dict[str, Any]


def build_emulator(
    group: InstanceGroup,
    policies: PoliciesConfig | None = None,
    *,
    speedup: float = 1.0,
    seed: int = 0,
    eos_mean: float = 256.0,
    served_model_name: str | None = None,
    max_model_len: int | None = None,
    slo_classes: dict[str, SLOClass] | None = None,
    max_lag_s: float = 0.05,
) -> Emulator:
    """An emulator of one instance of ``group`` (its ``count`` is ignored), built by the
    simulator's own factory. ``max_model_len`` defaults to what always fits: the KV capacity
    in tokens, at most the engine's ``max_model_len`` (and, without chunked prefill, the step
    token budget)."""
    from fleetsched.sim.build import build_instances

    if speedup <= 0:
        raise InputError(f"--speedup must be > 0, got {speedup}")
    one = group.model_copy(update={"count": 1})
    inst = build_instances(
        [one], policies or PoliciesConfig(), fast_forward=False, slo_classes=slo_classes, seed=seed
    )[0]
    cfg = inst.cfg
    fits = inst.kv.num_blocks * inst.bt
    if cfg.max_model_len:
        fits = min(fits, cfg.max_model_len)
    if not cfg.enable_chunked_prefill:
        fits = min(
            fits,
            cfg.max_num_batched_tokens,
            cfg.long_prefill_token_threshold or cfg.max_num_batched_tokens,
        )
    if max_model_len is None:
        max_model_len = fits
    elif max_model_len < 2 or max_model_len > fits:
        raise InputError(
            f"--max-model-len {max_model_len}: must be between 2 and {fits} tokens, what "
            f"{inst.kv.num_blocks} KV blocks of {inst.bt} tokens can hold"
            + ("" if cfg.enable_chunked_prefill else " in one step without chunked prefill")
        )
    loop = EngineLoop(inst, speedup=speedup, seed=seed, eos_mean=eos_mean, max_lag_s=max_lag_s)
    name = served_model_name or inst.model
    info = {
        "engine": "fleetsched-emulator",
        "speedup": speedup,
        "model": inst.model,
        "gpu": inst.gpu,
        "tp": group.tp,
        "num_gpu_blocks": inst.kv.num_blocks,
        "block_tokens": inst.bt,
        "seed": seed,
        "tokenizer": "fleetsched-words-v1",
    }
    metrics = EmulatorMetrics(loop, name, max_model_len)
    return Emulator(inst, loop, metrics, name, max_model_len, info)


# ---------------------------------------------------------------------------------- helpers
def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(obj).encode(), status=status, content_type="application/json"
    )


def _error(e: APIError) -> web.Response:
    return web.Response(
        body=e.json_bytes(), status=e.status, content_type="application/json", headers=e.headers
    )


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except APIError as e:
        return _error(e)
    except web.HTTPRequestEntityTooLarge as e:
        return _error(APIError(413, str(e.text or "request body too large")))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _error(APIError(e.status, e.reason))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return _error(APIError(500, "internal error in the emulator"))


def _usage(s: Stream) -> dict[str, Any]:
    p = s.prompt_tokens
    return {
        "prompt_tokens": p,
        "completion_tokens": s.produced,
        "total_tokens": p + s.produced,
        "prompt_tokens_details": {"cached_tokens": s.cached_tokens},
    }


class _Handlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.created = int(time.time())

    # -------------------------------------------------------------- validation
    def _check_model(self, model: str | None) -> None:
        if model is not None and model != self.emu.served_model_name:
            raise APIError(404, f"The model `{model}` does not exist.", "model")

    def _prompt_ids(self, r: GenerationRequest) -> list[int]:
        if r.kind == "chat":
            assert r.messages is not None
            return tokenizer.encode(tokenizer.render_chat(r.messages))
        if r.prompt_ids is not None:
            top = max(r.prompt_ids)
            if top >= tokenizer.VOCAB_SIZE:
                raise bad_request(f"Token id {top} is out of vocabulary", "prompt")
            return r.prompt_ids
        return tokenizer.encode(r.prompt_text or "")

    def _max_tokens(self, r: GenerationRequest, prompt_len: int) -> int:
        """vLLM's length checks (messages as in vLLM 0.19)."""
        limit = self.emu.max_model_len
        if prompt_len == 0:
            raise bad_request("The prompt is empty: it must have at least one token.", "prompt")
        if r.max_tokens is not None and r.max_tokens > limit:
            raise bad_request(
                f"max_tokens={r.max_tokens} cannot be greater than max_model_len="
                f"max_total_tokens={limit}. Please request fewer output tokens.",
                "max_tokens",
            )
        if prompt_len >= limit:
            raise bad_request(
                f"This model's maximum context length is {limit} tokens. However, your request "
                f"has {prompt_len} input tokens. Please reduce the length of the input messages."
                f" (parameter=input_tokens, value={prompt_len})",
                "input_tokens",
            )
        if r.max_tokens is None:
            return limit - prompt_len
        if prompt_len + r.max_tokens > limit:
            raise bad_request(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{r.max_tokens} output tokens and your prompt contains {prompt_len} input "
                f"tokens, for a total of {prompt_len + r.max_tokens} tokens. Please reduce the "
                "length of the input prompt or the number of requested output tokens. "
                f"(parameter=input_tokens, value={prompt_len})",
                "input_tokens",
            )
        return r.max_tokens

    # -------------------------------------------------------------- generation
    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "completions")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat")

    async def _generate(self, request: web.Request, kind: Any) -> web.StreamResponse:
        r = parse_request(await request.read(), kind)
        self._check_model(r.model)
        ids = self._prompt_ids(r)
        max_tokens = self._max_tokens(r, len(ids))
        loop = self.emu.loop
        stream = loop.submit(
            ids,
            max_tokens,
            min_tokens=r.min_tokens,
            ignore_eos=r.ignore_eos,
            tenant=r.user or "default",
            priority=-r.priority,  # vLLM: lower is earlier; fleetsched: higher is more important
        )
        try:
            if stream.rejected:
                raise bad_request(
                    f"the request ({len(ids)} prompt + {max_tokens} output tokens) can never "
                    "fit in this engine's KV cache",
                    "input_tokens",
                )
            if r.stream:
                return await self._stream(request, r, stream)
            return await self._whole(r, stream)
        finally:
            if not stream.done:  # the client went away (handler cancelled) or a write failed
                loop.abort(stream)

    def _ids(self, kind: str) -> tuple[str, bytes]:
        rid = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
        return rid, json.dumps(self.emu.served_model_name).encode()

    async def _whole(self, r: GenerationRequest, s: Stream) -> web.Response:
        while not s.done:
            await s.wait(s.produced)
        rid, _ = self._ids(r.kind)
        text = tokenizer.decode(s.token_ids[: s.produced].tolist())
        reason = s.finish_reason
        if r.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
            obj = "chat.completion"
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": reason,
                "stop_reason": None,
            }
            obj = "text_completion"
        return _json(
            {
                "id": rid,
                "object": obj,
                "created": self.created,
                "model": self.emu.served_model_name,
                "choices": [choice],
                "usage": _usage(s),
            }
        )

    async def _stream(
        self, request: web.Request, r: GenerationRequest, s: Stream
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        rid, model = self._ids(r.kind)
        head = b'data: {"id":"' + rid.encode() + b'","object":'
        created = str(self.created).encode()
        chat = r.kind == "chat"
        if chat:
            head += b'"chat.completion.chunk","created":' + created + b',"model":' + model
            head += b',"choices":[{"index":0,"delta":{"content":'
            mid = b'},"logprobs":null,"finish_reason":'
            tail = b"}]}\n\n"
        else:
            head += b'"text_completion","created":' + created + b',"model":' + model
            head += b',"choices":[{"index":0,"text":'
            mid = b',"logprobs":null,"finish_reason":'
            tail = b',"stop_reason":null}]}\n\n'
        pieces = _PIECE_JSON
        ids = s.token_ids
        seen = 0
        while True:
            n = await s.wait(seen)
            if n > seen:
                parts = []
                if chat and seen == 0:  # the role comes with the first token, as in vLLM
                    parts.append(
                        sse_data(
                            {
                                "id": rid,
                                "object": "chat.completion.chunk",
                                "created": self.created,
                                "model": self.emu.served_model_name,
                                "choices": [
                                    {
                                        "index": 0,
                                        "delta": {"role": "assistant", "content": ""},
                                        "logprobs": None,
                                        "finish_reason": None,
                                    }
                                ],
                            }
                        )
                    )
                for i in ids[seen:n].tolist():
                    parts.append(head + pieces[i] + mid + b"null" + tail)
                if s.done and n == len(ids):
                    parts[-1] = parts[-1].replace(
                        mid + b"null", mid + b'"' + s.finish_reason.encode() + b'"'
                    )
                seen = n
                await resp.write(b"".join(parts))
            if s.done:
                break
        if r.include_usage:
            await resp.write(
                sse_data(
                    {
                        "id": rid,
                        "object": "chat.completion.chunk" if chat else "text_completion",
                        "created": self.created,
                        "model": self.emu.served_model_name,
                        "choices": [],
                        "usage": _usage(s),
                    }
                )
            )
        await resp.write(DONE)
        await resp.write_eof()
        return resp

    # -------------------------------------------------------------- the rest
    async def models(self, request: web.Request) -> web.Response:
        name = self.emu.served_model_name
        card = {
            "id": name,
            "object": "model",
            "created": self.created,
            "owned_by": "fleetsched",
            "root": name,
            "parent": None,
            "max_model_len": self.emu.max_model_len,
            "permission": [],
            "fleetsched": self.emu.info,
        }
        return _json({"object": "list", "data": [card]})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version(self, request: web.Request) -> web.Response:
        """vLLM's ``GET /version`` (what clients probe to tell a vLLM server)."""
        return _json({"version": __version__, "engine": "fleetsched-emulator"})

    async def tokenize(self, request: web.Request) -> web.Response:
        body = load_json_object(await request.read())
        self._check_model(body.get("model") if isinstance(body.get("model"), str) else None)
        if "messages" in body:
            r = parse_request({"messages": body["messages"]}, "chat")
            agp = body.get("add_generation_prompt", True)
            if not isinstance(agp, bool):
                raise bad_request(
                    "'add_generation_prompt' must be a boolean", "add_generation_prompt"
                )
            assert r.messages is not None
            ids = tokenizer.encode(tokenizer.render_chat(r.messages, agp))
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise bad_request("'prompt' must be a string", "prompt")
            ids = tokenizer.encode(prompt)
        return _json(
            {
                "count": len(ids),
                "max_model_len": self.emu.max_model_len,
                "tokens": ids,
                "token_strs": None,
            }
        )

    async def detokenize(self, request: web.Request) -> web.Response:
        body = load_json_object(await request.read())
        toks = body.get("tokens")
        if not isinstance(toks, list) or any(
            isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < tokenizer.VOCAB_SIZE
            for t in toks
        ):
            raise bad_request(
                f"'tokens' must be a list of token ids in [0, {tokenizer.VOCAB_SIZE})", "tokens"
            )
        return _json({"prompt": tokenizer.decode(toks)})

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.emu.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


#: Where the application keeps its :class:`Emulator`.
EMULATOR_KEY = web.AppKey("emulator", Emulator)


def make_app(emu: Emulator) -> web.Application:
    """The aiohttp application serving ``emu`` (start it with handler cancellation on, as
    :func:`start` does, so a client disconnect aborts its request)."""
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    h = _Handlers(emu)
    app.router.add_post("/v1/completions", h.completions)
    app.router.add_post("/v1/chat/completions", h.chat)
    app.router.add_get("/v1/models", h.models)
    app.router.add_get("/health", h.health)
    app.router.add_get("/version", h.version)
    app.router.add_post("/tokenize", h.tokenize)
    app.router.add_post("/detokenize", h.detokenize)
    app.router.add_get("/metrics", h.metrics)
    app[EMULATOR_KEY] = emu

    async def _close(app: web.Application) -> None:
        emu.loop.close()

    app.on_shutdown.append(_close)
    return app


async def start(emu: Emulator, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve ``emu`` on ``host:port`` (0 picks a free port) in the running event loop.
    Returns the runner (``await runner.cleanup()`` stops it) and the port."""
    runner = web.AppRunner(make_app(emu), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)


__all__ = ["EMULATOR_KEY", "Emulator", "build_emulator", "make_app", "start"]
