"""Serving bakes: an OpenAI-compatible HTTP API and a web page (bgit.serve)."""

from __future__ import annotations

from bgit.api._open import RepoLike, open_repo
from bgit.serve import run


def serve(repo: RepoLike = ".", refs=(), host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          on_ready=None, device: str | None = None, max_batch: int = 16) -> None:
    """Serve ``refs`` (default: every branch and tag that is a bake, plus ``base``) until
    interrupted; ``on_ready(ServeInfo)`` is called once the socket listens. A non-loopback
    ``host`` needs ``api_key``."""
    repo = open_repo(repo)
    run(repo.root, refs, host=host, port=port, api_key=api_key, on_ready=on_ready, device=device,
        max_batch=max_batch)
