"""The ASGI application: OpenAI's routes, the web page's routes, and the guard in front.

    GET  /v1/models                  served refs + base
    GET  /v1/models/{model}
    POST /v1/chat/completions        stream: true -> server-sent events, ending with [DONE]
    POST /v1/completions
    GET  /                           the web page (bgit.serve.web)
    GET  /bgit/...                   the page's data: bakes, prompts, plots, engine stats

A client that goes away stops its generation: streaming responses are cancelled by Starlette
when the connection closes, non-streaming ones watch for the disconnect themselves.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bgit.serve import openai_api as oa
from bgit.serve.backend import GenerationRequest
from bgit.serve.errors import APIError
from bgit.serve.guard import Guard

log = logging.getLogger("bgit.serve")


class _ClientGone(Exception):
    pass


def create_app(backend, api_key: str | None = None, loopback: bool = True) -> Starlette:
    """The whole server for ``backend``; ``api_key`` (None = none) is checked on every request;
    ``loopback``: the server listens on a loopback address only (Host headers are checked)."""
    from bgit.serve.web import web_routes

    api = _API(backend)
    routes = [
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/models/{model:path}", api.model, methods=["GET"]),
        Route("/v1/chat/completions", api.chat, methods=["POST"]),
        Route("/v1/completions", api.completions, methods=["POST"]),
        Route("/bgit/stats", api.stats, methods=["GET"]),
        *web_routes(backend, api_key),
    ]
    app = Starlette(routes=routes, exception_handlers={
        APIError: _api_error, 404: _not_found, 405: _not_allowed, Exception: _internal_error})
    app.state.backend = backend
    return Guard(app, api_key=api_key, loopback=loopback)


class _API:
    def __init__(self, backend) -> None:
        self.backend = backend

    async def models(self, request: Request) -> JSONResponse:
        names = await run_in_threadpool(self.backend.list_models)
        return JSONResponse(oa.models_response(names, oa.now()))

    async def model(self, request: Request) -> JSONResponse:
        name = request.path_params["model"]
        if name not in await run_in_threadpool(self.backend.list_models):
            await run_in_threadpool(self.backend.registry.resolve, name)  # a commit id, or 404
        return JSONResponse({"id": name, "object": "model", "created": oa.now(), "owned_by": "bgit"})

    async def stats(self, request: Request) -> JSONResponse:
        return JSONResponse(self.backend.stats())

    async def chat(self, request: Request) -> Response:
        parsed = oa.parse_chat(await _json(request), self.backend.tokenizer, self.backend.max_context)
        served = await run_in_threadpool(self.backend.registry.resolve, parsed.model)
        generation = GenerationRequest(served, parsed.prompts[0], parsed.params)
        request_id, created = oa.new_id("chatcmpl"), oa.now()
        if parsed.stream:
            return _sse(self._chat_events(generation, request_id, created, parsed.include_usage))
        try:
            result = await _unless_disconnected(request, self.backend.generate(generation))
        except _ClientGone:
            return Response(status_code=499)
        return JSONResponse(oa.chat_response(request_id, created, result))

    async def _chat_events(self, generation, request_id, created, include_usage):
        served = generation.model
        yield oa.chat_chunk(request_id, created, served, {"role": "assistant", "content": ""}, None, include_usage)
        completion = 0
        async for event in _closing(self.backend.stream(generation)):
            completion = event.completion_tokens
            if event.text:
                yield oa.chat_chunk(request_id, created, served, {"content": event.text}, None, include_usage)
            if event.finish_reason:
                yield oa.chat_chunk(request_id, created, served, {}, event.finish_reason, include_usage)
        if include_usage:
            yield oa.chat_chunk(request_id, created, served, None, None, True,
                                oa.usage(len(generation.prompt_ids), completion))

    async def completions(self, request: Request) -> Response:
        parsed = oa.parse_completion(await _json(request), self.backend.tokenizer, self.backend.max_context)
        served = await run_in_threadpool(self.backend.registry.resolve, parsed.model)
        generations = [GenerationRequest(served, ids, parsed.params) for ids in parsed.prompts]
        request_id, created = oa.new_id("cmpl"), oa.now()
        if parsed.stream:
            return _sse(self._completion_events(generations[0], request_id, created, parsed.include_usage))
        try:
            results = await _unless_disconnected(
                request, asyncio.gather(*(self.backend.generate(g) for g in generations)))
        except _ClientGone:
            return Response(status_code=499)
        return JSONResponse(oa.completion_response(request_id, created, list(results)))

    async def _completion_events(self, generation, request_id, created, include_usage):
        served = generation.model
        completion = 0
        async for event in _closing(self.backend.stream(generation)):
            completion = event.completion_tokens
            if event.text or event.finish_reason:
                yield oa.completion_chunk(request_id, created, served, event.text, event.finish_reason,
                                          include_usage)
        if include_usage:
            yield oa.completion_chunk(request_id, created, served, None, None, True,
                                      oa.usage(len(generation.prompt_ids), completion))


async def _closing(stream):
    """Iterate an async generator and close it however the iteration ends (a disconnect
    cancels us: the backend must hear of it at once, not when the generator is collected)."""
    try:
        async for item in stream:
            yield item
    finally:
        await stream.aclose()


def _sse(chunks) -> StreamingResponse:
    async def body():
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        except APIError as error:  # after the 200 has gone out: the error travels as an event
            yield f"data: {json.dumps(error.to_json())}\n\n"
        finally:
            await chunks.aclose()
        yield "data: [DONE]\n\n"
    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _unless_disconnected(request: Request, awaitable):
    """Await ``awaitable``; cancel it (freeing its slot) if the client disconnects first."""
    work = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if work in done:
        return work.result()
    work.cancel()
    try:
        await work
    except (asyncio.CancelledError, Exception):
        pass
    raise _ClientGone()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _json(request: Request):
    body = await request.body()
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise APIError(400, f"We could not parse the JSON body of your request: {error}. The body must be "
                       "valid JSON (Content-Type: application/json).", code="invalid_json") from None


async def _api_error(request: Request, error: APIError) -> JSONResponse:
    return JSONResponse(error.to_json(), status_code=error.status)


async def _not_found(request: Request, error) -> JSONResponse:
    return JSONResponse(APIError(404, f"Unknown path {request.url.path}.", code="unknown_url").to_json(),
                        status_code=404)


async def _not_allowed(request: Request, error) -> JSONResponse:
    return JSONResponse(APIError(405, f"{request.method} is not allowed on {request.url.path}.",
                                 code="method_not_allowed").to_json(), status_code=405)


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("request failed", exc_info=error)
    return JSONResponse(APIError(500, f"internal error: {type(error).__name__}: {error}",
                                 type="server_error").to_json(), status_code=500)
