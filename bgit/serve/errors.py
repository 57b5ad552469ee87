"""Errors of the serving layer.

:class:`ServeError` subclasses are what ``bgit serve`` can hit before it listens (one line,
``Error: ...`` from the CLI). :class:`APIError` is an HTTP error answered to one client in
OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``); the server keeps running.
"""

from __future__ import annotations

from bgit.errors import BgitError


class ServeError(BgitError):
    """Base of the serving layer's errors."""


class UnsafeBindError(ServeError):
    def __init__(self, host: str) -> None:
        super().__init__(f"refusing to listen on {host} without an API key: pass --api-key or set BGIT_API_KEY "
                         "(only loopback addresses are served without one)")
        self.host = host


class NothingToServeError(ServeError):
    def __init__(self) -> None:
        super().__init__("nothing to serve: no branch or tag points at a bake commit")


class MixedBaseModelsError(ServeError):
    def __init__(self, ref: str, base: str, first_ref: str, first_base: str) -> None:
        super().__init__(f"{ref} is baked on {base} but {first_ref} on {first_base}: "
                         "one server serves the bakes of one base model")
        self.ref, self.base, self.first_ref, self.first_base = ref, base, first_ref, first_base


class ReservedModelNameError(ServeError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"cannot serve a ref named '{ref}': that model name means the base model")
        self.ref = ref


class ListenError(ServeError):
    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.host, self.port, self.reason = host, port, reason


class ServeDependencyError(ServeError):
    def __init__(self, missing: str) -> None:
        super().__init__(f"bgit serve needs {missing}: pip install 'bgit[serve]'")
        self.missing = missing


class APIError(Exception):
    """An error answered to one HTTP client, in OpenAI's error shape."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def to_json(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def model_not_found(name: str) -> APIError:
    return APIError(404, f"The model `{name}` does not exist: it is not a served ref, a bake commit reachable "
                    "from one, or `base`.", param="model", code="model_not_found")
