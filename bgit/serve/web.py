"""The web page: the served bakes as a log, each bake's KL curve and weight heatmap, and a
side-by-side chat (the base model with the teacher prompt, the bake with its student prompt).

Plain HTML rendered here, one small script (``static/page.js``) that calls this server's own
API; no build step, nothing fetched from elsewhere. Plots are the PNGs bgit already draws
(:mod:`bgit.evaluate.metrics`, :mod:`bgit.evaluate.plots`), rendered once per commit.
"""

from __future__ import annotations

import re
import tempfile
import threading
from html import escape
from importlib import resources
from pathlib import Path
from string import Template

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bgit.serve.errors import APIError

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_STATIC = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
_PLOT_LOCK = threading.Lock()  # matplotlib's pyplot is not thread-safe


def web_routes(backend, api_key: str | None) -> list[Route]:
    page = _Page(backend)
    return [
        Route("/", page.index, methods=["GET"]),
        Route("/bgit/bakes", page.bakes, methods=["GET"]),
        Route("/bgit/bakes/{commit}/prompts", page.prompts, methods=["GET"]),
        Route("/bgit/bakes/{commit}/{plot}.png", page.plot, methods=["GET"]),
        Route("/bgit/static/{name}", page.static, methods=["GET"]),
    ]


def bake_log(registry, limit: int = 50) -> list[dict]:
    """The bakes of our base model reachable from the served refs, newest first."""
    with registry.lock:
        served = registry.served_refs()
        names: dict[str, list[str]] = {}
        for name, commit in served:
            names.setdefault(commit, []).append(name)
        entries, seen = [], set()
        for _, tip in served:
            for entry in registry.repo.log(tip, limit):
                if entry.id not in seen:
                    seen.add(entry.id)
                    item = _log_item(registry, entry, names.get(entry.id, []))
                    if item is not None:
                        entries.append(item)
    entries.sort(key=lambda e: e["time"], reverse=True)
    return entries[:limit]


def _log_item(registry, entry, refs: list[str]) -> dict | None:
    from bgit.evaluate import read_eval
    from bgit.evaluate.bakes import read_record
    from bgit.record import BakeRecordError

    try:
        record = read_record(registry.repo, registry.repo.git.get(entry.id))
    except BakeRecordError:
        return None
    if record is None or record.base_model.name != registry.base_model:
        return None
    results = read_eval(registry.repo, entry.id)
    return {"commit": entry.id, "short": entry.id[:8], "refs": refs, "model": (refs or [entry.id[:12]])[0],
            "summary": entry.summary, "message": entry.message, "time": entry.time, "date": entry.date(),
            "base_model": record.base_model.name, "targets": list(record.targets), "final_kl": record.final_kl,
            "closure": results.closure if results else None}


def bake_prompts(registry, commit: str) -> dict:
    """The teacher and student messages of each target of a bake (from its input.yml)."""
    with registry.lock:
        bake = registry.open(commit)
        config = bake.config()
    if config is None:
        return {"commit": commit, "targets": []}
    targets = []
    for target in config.targets:
        prompt = config.prompt_for(target)
        targets.append({"target": target.name, "teacher": prompt.teacher_messages,
                        "student": prompt.student_messages, "teacher_tools": bool(prompt.teacher_tools)})
    return {"commit": commit, "targets": targets}


def loss_png(registry, commit: str) -> bytes:
    from bgit.evaluate.metrics import plot_metrics, read_metrics

    with registry.lock:
        bake = registry.open(commit)
        metrics = read_metrics(bake)
    return _render(lambda path: plot_metrics(metrics, path, title=f"{commit[:8]}: KL during baking"))


def weights_png(registry, commit: str) -> bytes:
    """Per-layer heatmap: relative change against the parent bake (as ``bgit diff --plot``), or
    ‖ΔW‖ of the adapter itself when the parent is not a bake of the same base model."""
    from dataclasses import replace

    from bgit.evaluate.plots import plot_weight_heatmap
    from bgit.evaluate.weights import adapter_factors, compare_factors, weight_diff

    with registry.lock:
        bake = registry.open(commit)
        parent = _parent_bake(registry, bake)
        if parent is not None:
            modules = weight_diff(parent, bake).modules
            title = f"{parent.short} → {bake.short}: relative change ‖ΔW_B − ΔW_A‖ / ‖ΔW_A‖"
        else:
            factors, _ = adapter_factors(bake)
            modules = [replace(m, relative=m.diff_norm) for m in compare_factors({}, factors)]
            title = f"{bake.short}: ‖ΔW‖ of the adapter (vs the base model)"
    return _render(lambda path: plot_weight_heatmap(modules, path, title=title))


def _parent_bake(registry, bake):
    """The first parent when it is a bake of the same base model with an adapter, else None."""
    from bgit.evaluate import NotABakeError
    from bgit.record import BakeRecordError

    if not bake.commit.parent_ids:
        return None
    try:
        parent = registry.open(str(bake.commit.parent_ids[0]))
    except (NotABakeError, BakeRecordError):
        return None
    if parent.base_model_name != bake.base_model_name or not parent.has_adapter():
        return None
    return parent


def _render(draw) -> bytes:
    with _PLOT_LOCK, tempfile.TemporaryDirectory(prefix="bgit-serve-plot-") as directory:
        path = Path(directory) / "plot.png"
        draw(path)
        return path.read_bytes()


class _Page:
    def __init__(self, backend) -> None:
        self.backend, self.registry = backend, backend.registry
        self._plots: dict[tuple[str, str], bytes] = {}

    async def index(self, request: Request) -> HTMLResponse:
        entries = await run_in_threadpool(bake_log, self.registry)
        return HTMLResponse(render_page(self.registry, entries))

    async def bakes(self, request: Request) -> JSONResponse:
        entries = await run_in_threadpool(bake_log, self.registry)
        return JSONResponse({"base_model": self.registry.base_model, "models": self.backend.list_models(),
                             "bakes": entries})

    async def prompts(self, request: Request) -> JSONResponse:
        commit = await self._commit(request)
        return JSONResponse(await run_in_threadpool(bake_prompts, self.registry, commit))

    async def plot(self, request: Request) -> Response:
        from bgit.evaluate import EvaluateError

        commit, kind = await self._commit(request), request.path_params["plot"]
        draw = {"loss": loss_png, "weights": weights_png}.get(kind)
        if draw is None:
            raise APIError(404, f"Unknown plot {kind}: loss or weights.", code="unknown_url")
        key = (kind, commit)
        if key not in self._plots:
            try:
                png = await run_in_threadpool(draw, self.registry, commit)
            except EvaluateError as error:
                raise APIError(404, f"No {kind} plot for {commit[:8]}: {error}", code="nothing_to_plot") from None
            if len(self._plots) > 128:
                self._plots.clear()
            self._plots[key] = png
        return Response(self._plots[key], media_type="image/png", headers={"Cache-Control": "max-age=86400"})

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            raise APIError(404, f"Unknown file {name}.", code="unknown_url")
        return Response(_static_text(name), media_type=_STATIC[name])

    async def _commit(self, request: Request) -> str:
        """A full commit id that is a bake reachable from the served refs (else 404)."""
        commit = request.path_params["commit"]
        if not _COMMIT.match(commit):
            raise APIError(404, f"Not a full commit id: {commit}.", param="commit", code="unknown_commit")
        served = await run_in_threadpool(self.registry.resolve, commit)  # 404 unless served or reachable
        return served.commit


def _static_text(name: str) -> str:
    return resources.files("bgit.serve").joinpath("static", name).read_text(encoding="utf-8")


def render_page(registry, entries: list[dict]) -> str:
    rows = "\n".join(_row(entry) for entry in entries) or \
        '<tr><td colspan="7">No bakes reachable from the served refs.</td></tr>'
    models = [name for name, _ in registry.served_refs()]
    page = Template(_static_text("page.html"))
    return page.substitute(
        repo=escape(str(registry.repo.root)), base_model=escape(str(registry.base_model)),
        served=", ".join(f"<code>{escape(name)}</code>" for name in models), rows=rows)


def _row(entry: dict) -> str:
    def number(value):
        return "–" if value is None else f"{value:.3g}"

    refs = "".join(f'<span class="ref">{escape(r)}</span>' for r in entry["refs"])
    return (f'<tr class="bake" data-commit="{entry["commit"]}" data-model="{escape(entry["model"])}">'
            f'<td><code>{entry["short"]}</code> {refs}</td>'
            f'<td class="message" title="{escape(entry["message"])}">{escape(entry["summary"])}</td>'
            f'<td>{escape(str(entry["base_model"]))}</td><td>{escape(", ".join(entry["targets"]))}</td>'
            f'<td class="closure">{number(entry["closure"])}</td><td>{number(entry["final_kl"])}</td>'
            f'<td>{escape(entry["date"])}</td></tr>')
