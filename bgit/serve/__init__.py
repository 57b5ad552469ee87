"""Serving bakes: an OpenAI-compatible HTTP API and a web page to browse and compare them.

    from bgit.serve import run
    run("path/to/repo", refs=["main", "v1"], host="127.0.0.1", port=8000, api_key=None,
        on_ready=lambda info: print(info.url))

Each served bake is a model named by its ref (``main``, a tag, a commit id); ``base`` is the
base model without adapter. A branch is resolved when a request starts, so a new bake on it
is served from the next request on, without a restart. Loopback only unless an API key is set.

Layers: serve -> evaluate -> models, config, repo. The pieces:

    registry.py   which refs are served and what a request's model names now
    backend.py    the ServeBackend interface (list, generate, stream) and its request types
    hf.py         the built-in backend: transformers + PEFT, adapters chosen per batch row
    engine.py     its generation loop in one worker thread; batch.py its KV-cached batches
    decoding.py   sampling and incremental detokenisation with stop strings
    openai_api.py OpenAI request validation and response shapes
    app.py        the Starlette routes; guard.py API key, Host and Origin checks
    web.py        the page at / (static/page.html, page.js, page.css)
    server.py     build / run / RunningServer (uvicorn)

Heavy imports (torch, transformers, peft, starlette, uvicorn) happen inside the functions.
"""

from bgit.serve.errors import (
    APIError,
    ListenError,
    MixedBaseModelsError,
    NothingToServeError,
    ReservedModelNameError,
    ServeDependencyError,
    ServeError,
    UnsafeBindError,
)
from bgit.serve.server import RunningServer, ServeInfo, build, check_bind, run

__all__ = [
    "APIError",
    "ListenError",
    "MixedBaseModelsError",
    "NothingToServeError",
    "ReservedModelNameError",
    "RunningServer",
    "ServeDependencyError",
    "ServeError",
    "ServeInfo",
    "UnsafeBindError",
    "build",
    "check_bind",
    "run",
]
