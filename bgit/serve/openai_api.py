"""OpenAI's request and response formats: validation into bgit's types, and JSON out.

Chat rendering follows bgit's rules (:func:`bgit.models.render_context`): messages are
rendered as given, and a conversation without a system message (or with an empty one) has no
system text at all, although some templates (SmolLM2's) would inject a default one.
Every invalid value is an :class:`~bgit.serve.errors.APIError` 400 naming the parameter.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from bgit.serve.backend import Generation, SamplingParams
from bgit.serve.errors import APIError, bad_request

ROLES = {"system", "developer", "user", "assistant"}
# Parameters that would change what comes back; accepted only at their neutral value.
NEUTRAL = {"tools": (None, []), "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None, "none"),
           "logprobs": (None, False), "top_logprobs": (None, 0), "logit_bias": (None, {}),
           "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0), "best_of": (None, 1),
           "echo": (None, False), "suffix": (None, ""), "response_format": (None, {"type": "text"})}


@dataclass
class ParsedRequest:
    model: str
    prompts: list[list[int]]
    params: SamplingParams
    stream: bool
    include_usage: bool


def parse_chat(body, tokenizer, max_context: int) -> ParsedRequest:
    body = _object(body)
    model = _model(body)
    messages = _messages(body.get("messages"))
    ids = _render(tokenizer, messages)
    return _finish(body, model, [ids], max_context, default_max_tokens=None, prompt_param="messages")


def parse_completion(body, tokenizer, max_context: int) -> ParsedRequest:
    body = _object(body)
    model = _model(body)
    prompts = _prompts(body.get("prompt"), tokenizer)
    parsed = _finish(body, model, prompts, max_context, default_max_tokens=16, prompt_param="prompt")
    if parsed.stream and len(prompts) > 1:
        raise bad_request("stream is supported with one prompt only.", "stream")
    return parsed


# -- validation ------------------------------------------------------------------------------

def _object(body) -> dict:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", None, code="invalid_type")
    return body


def _model(body: dict) -> str:
    model = body.get("model")
    if model is None:
        raise bad_request("you must provide a model parameter", "model", code="missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise bad_request("model must be a non-empty string.", "model", code="invalid_type")
    return model


def _messages(raw) -> list[dict]:
    if raw is None:
        raise bad_request("you must provide a messages parameter", "messages", code="missing_required_parameter")
    if not isinstance(raw, list) or not raw:
        raise bad_request("messages must be a non-empty array.", "messages", code="invalid_type")
    out = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object.", where, code="invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise bad_request(f"{where}.role must be one of {', '.join(sorted(ROLES))} (got {role!r}).",
                              f"{where}.role")
        content = _content(message.get("content"), f"{where}.content")
        role = "system" if role == "developer" else role
        if role == "system" and not content.strip():
            continue  # an empty system prompt means no system text at all
        out.append({"role": role, "content": content})
    if not out:
        raise bad_request("messages has nothing but empty system messages.", "messages")
    return out


def _content(content, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise bad_request(f"{where}: only text parts are supported.", where)
            parts.append(part["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise bad_request(f"{where} must be a string or an array of text parts.", where, code="invalid_type")


def _render(tokenizer, messages: list[dict]) -> list[int]:
    from bgit.models import ChatTemplateError, render_context

    try:
        return render_context(tokenizer, messages)
    except ChatTemplateError as error:
        raise bad_request(f"the chat template could not render these messages: {error}", "messages") from None


def _prompts(raw, tokenizer) -> list[list[int]]:
    if raw is None:
        raise bad_request("you must provide a prompt parameter", "prompt", code="missing_required_parameter")
    if isinstance(raw, str):
        raw = [raw]
    elif isinstance(raw, list) and raw and all(_is_int(t) for t in raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise bad_request("prompt must be a string, an array of strings or of token arrays.", "prompt",
                          code="invalid_type")
    prompts = []
    for item in raw:
        if isinstance(item, str):
            prompts.append(list(tokenizer(item)["input_ids"]))
        elif isinstance(item, list) and item and all(_is_int(t) for t in item):
            if any(t < 0 or t >= len(tokenizer) for t in item):
                raise bad_request("prompt holds a token id outside the vocabulary.", "prompt")
            prompts.append([int(t) for t in item])
        else:
            raise bad_request("prompt must be a string, an array of strings or of token arrays.", "prompt",
                              code="invalid_type")
    if any(not p for p in prompts):
        raise bad_request("prompt must not be empty.", "prompt")
    return prompts


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: dict, key: str, default, low: float, high: float, integer: bool = False):
    value = body.get(key)
    if value is None:
        return default
    ok = _is_int(value) if integer else (isinstance(value, (int, float)) and not isinstance(value, bool))
    if not ok:
        raise bad_request(f"{key} must be {'an integer' if integer else 'a number'}.", key, code="invalid_type")
    if not low <= value <= high:
        raise bad_request(f"{key} must be between {low:g} and {high:g} (got {value}).", key)
    return value


def _flag(body: dict, key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be a boolean.", key, code="invalid_type")
    return value


def _stop(raw) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
        raise bad_request("stop must be a non-empty string or an array of up to 4 of them.", "stop")
    return tuple(stops)


def _finish(body: dict, model: str, prompts, max_context: int, default_max_tokens, prompt_param: str):
    for key, neutral in NEUTRAL.items():
        if key in body and body[key] not in neutral:
            raise bad_request(f"{key} is not supported by bgit serve.", key, code="unsupported_parameter")
    if _number(body, "n", 1, 1, 1_000_000, integer=True) != 1:
        raise bad_request("n must be 1: bgit serve returns one choice per prompt.", "n")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, None, 1, 10**9, integer=True)
    longest = max(len(p) for p in prompts)
    _check_context(longest, max_tokens, max_context, prompt_param)
    if max_tokens is None:
        max_tokens = max_context - longest if default_max_tokens is None else min(default_max_tokens,
                                                                                  max_context - longest)
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not (isinstance(options, dict) and isinstance(options.get("include_usage", False), bool)):
        raise bad_request("stream_options must be an object like {\"include_usage\": true}.", "stream_options")
    if options is not None and not stream:
        raise bad_request("stream_options is only allowed when stream is true.", "stream_options")
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=float(_number(body, "temperature", 1.0, 0.0, 2.0)),
        top_p=float(_number(body, "top_p", 1.0, 1e-9, 1.0)),
        seed=_number(body, "seed", None, -(2**63), 2**63 - 1, integer=True),
        stop=_stop(body.get("stop")),
        ignore_eos=_flag(body, "ignore_eos"),
    )
    return ParsedRequest(model, prompts, params, stream, bool((options or {}).get("include_usage")))


def _check_context(prompt_tokens: int, max_tokens, max_context: int, param: str) -> None:
    wanted = prompt_tokens + (max_tokens or 1)
    if prompt_tokens >= max_context or wanted > max_context:
        asked = f"{wanted} tokens ({prompt_tokens} in the {param}, {max_tokens or 1} for the completion)"
        raise APIError(400, f"This model's maximum context length is {max_context} tokens. However, you "
                       f"requested {asked}. Please reduce the length of the {param} or of max_tokens.",
                       param=param, code="context_length_exceeded")


# -- responses -------------------------------------------------------------------------------

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_response(request_id: str, created: int, gen: Generation) -> dict:
    return {"id": request_id, "object": "chat.completion", "created": created, "model": gen.model.name,
            "system_fingerprint": gen.model.fingerprint,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                         "logprobs": None, "finish_reason": gen.finish_reason}],
            "usage": usage(gen.prompt_tokens, gen.completion_tokens)}


def chat_chunk(request_id: str, created: int, served, delta: dict | None, finish_reason: str | None,
               include_usage: bool, usage_value: dict | None = None) -> dict:
    chunk = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": served.name,
             "system_fingerprint": served.fingerprint,
             "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                    "finish_reason": finish_reason}]}
    if include_usage:
        chunk["usage"] = usage_value
    return chunk


def completion_response(request_id: str, created: int, generations: list[Generation]) -> dict:
    served = generations[0].model
    return {"id": request_id, "object": "text_completion", "created": created, "model": served.name,
            "system_fingerprint": served.fingerprint,
            "choices": [{"index": i, "text": g.text, "logprobs": None, "finish_reason": g.finish_reason}
                        for i, g in enumerate(generations)],
            "usage": usage(sum(g.prompt_tokens for g in generations), sum(g.completion_tokens for g in generations))}


def completion_chunk(request_id: str, created: int, served, text: str | None, finish_reason: str | None,
                     include_usage: bool, usage_value: dict | None = None) -> dict:
    chunk = {"id": request_id, "object": "text_completion", "created": created, "model": served.name,
             "system_fingerprint": served.fingerprint,
             "choices": [] if text is None else [{"index": 0, "text": text, "logprobs": None,
                                                   "finish_reason": finish_reason}]}
    if include_usage:
        chunk["usage"] = usage_value
    return chunk


def models_response(names: list[str], created: int) -> dict:
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "bgit"}
                                       for name in names]}
