"""bgit as a library: one function per command, the same behaviour as the command line.

Every function takes a repository (a path, default ".", or a :class:`Repository`), returns a
typed result (with ``to_json()`` where the CLI prints JSON) and raises :class:`BgitError`
subclasses with one-line messages. Long operations take a ``reporter``
(:mod:`bgit.util.progress`; silent by default)::

    from bgit import api

    api.init("yoda")                               # a repository with the Yoda example
    result = api.bake("yoda", message="Yoda, r=16")
    for item in api.log("yoda"):
        print(item.entry.id[:7], item.entry.summary, item.eval.closure if item.eval else None)
    api.checkout("yoda", "HEAD~1")                 # fetches missing payloads from the remote
    api.push("yoda", "origin")
    for entry in api.models().models:              # embedded, Hugging Face cache, --path
        print(entry.name, entry.loadable)

Opening a repository through the api installs the lazy payload fetcher, so a checkout of an
older bake in a clone fetches what it needs from the remote's store, as ``bgit checkout`` does.
"""

from bgit.api._open import open_repo
from bgit.api.hooks import hook_disable, hook_enable, hooks_list
from bgit.api.merge import RevertResult, merge, merge_abort, merge_continue, reset, revert, rm
from bgit.api.models import ModelEntry, ModelsListing, models
from bgit.api.pipeline import PhaseRows, ValidateResult, bake, bake_plan, baker, rollout, stim, validate
from bgit.api.remote import clone, fetch, pull, push, remote_add, remote_list, remote_remove, store_url
from bgit.api.repo import (BakeSummary, CheckoutResult, CommitResult, GcResult, InitResult, LogItem, ShowItem, add,
                           branch_create, branch_delete, branch_list, checkout, commit, fsck, gc, init, log, show,
                           status, tag_create, tag_delete, tag_list)
from bgit.api.serve import serve
from bgit.api.use import GenerateResult, MetricsResult, chat_session, diff, eval, export, generate, metrics
from bgit.errors import BgitError
from bgit.repo import Repository

__all__ = [
    "BgitError", "Repository", "open_repo",
    # repository
    "init", "add", "commit", "status", "log", "show", "branch_list", "branch_create", "branch_delete",
    "tag_list", "tag_create", "tag_delete", "checkout", "fsck", "gc",
    # git's verbs for bakes
    "merge", "merge_continue", "merge_abort", "revert", "reset", "rm",
    # pipeline
    "validate", "stim", "rollout", "bake_plan", "bake", "baker",
    # using bakes
    "diff", "eval", "generate", "chat_session", "export", "metrics",
    # serving
    "serve",
    # remotes
    "remote_add", "remote_remove", "remote_list", "store_url", "push", "fetch", "pull", "clone",
    # hooks
    "hooks_list", "hook_enable", "hook_disable",
    # models
    "models",
    # results
    "InitResult", "CommitResult", "LogItem", "ShowItem", "BakeSummary", "CheckoutResult", "GcResult",
    "ValidateResult", "PhaseRows", "GenerateResult", "MetricsResult", "RevertResult", "ModelEntry",
    "ModelsListing",
]
