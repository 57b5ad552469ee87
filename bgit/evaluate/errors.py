"""Errors of the evaluate layer (diff, eval, chat, generate, export, metrics); one line each."""

from __future__ import annotations

from bgit.errors import BgitError


class EvaluateError(BgitError):
    """Base of the evaluate layer's errors."""


class NotABakeError(EvaluateError):
    def __init__(self, ref: str, missing: str) -> None:
        super().__init__(f"{ref} is not a bake commit: it has no {missing}")
        self.ref, self.missing = ref, missing


class NoBaseModelError(EvaluateError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"{ref} has no bake.yml and its adapter_config.json names no base model "
                         "(base_model_name_or_path): pass --base NAME")
        self.ref = ref


class ExportError(EvaluateError):
    pass


class BaseModelMismatchError(EvaluateError):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"the bakes use different base models ({a} vs {b}): their behaviour cannot be compared")
        self.a, self.b = a, b


class NoEvalStimsError(EvaluateError):
    pass


class BadStimsFileError(EvaluateError):
    def __init__(self, path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason
