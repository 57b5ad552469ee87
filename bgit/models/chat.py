"""Rendering chat contexts to token ids, without templates' default system prompts.

Some chat templates (SmolLM2's included) inject a default system prompt when the
conversation has no system message. For baking, an empty prompt must mean *no* prompt
tokens, so :func:`render_context` detects such a block generically and removes it:

1. render ``[user: U]`` (A) and ``[system: S, user: U]`` (B) with sentinel strings;
2. B = ``pre + S + post``. If A = ``pre + D + post`` with non-blank D, the template
   injects D. The injected block runs from the start of the system turn's header
   (inside ``pre``) to the start of the user turn's header (inside ``post``).
3. That block is cut from every rendering whose messages have no system message.
"""

from __future__ import annotations

from bgit.models.errors import ChatTemplateError

_SYSTEM_SENTINEL = "SYSTEM-SENTINEL-7f3a"
_USER_SENTINEL = "USER-SENTINEL-9c1e"

_default_blocks: dict[str, str | None] = {}


def render_context(tokenizer, messages, user=None, tools=None, add_generation_prompt=True) -> list[int]:
    """Chat-template ``messages`` (+ a user turn) to token ids; no default system text."""
    conversation = [dict(m) for m in messages or []]
    if user is not None:
        conversation.append({"role": "user", "content": user})
    if not conversation:
        raise ChatTemplateError("nothing to render: no messages and no user message")
    text = render_text(tokenizer, conversation, tools=tools, add_generation_prompt=add_generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def render_text(tokenizer, conversation, tools=None, add_generation_prompt=True) -> str:
    text = _apply(tokenizer, conversation, tools, add_generation_prompt)
    if any(m.get("role") == "system" for m in conversation):
        return text
    block = default_system_block(tokenizer)
    if block and block in text:
        text = text.replace(block, "", 1)
    return text


def default_system_block(tokenizer) -> str | None:
    """The text a template injects when there is no system message, or None."""
    template = tokenizer.chat_template or ""
    if template not in _default_blocks:
        _default_blocks[template] = _detect_default_block(tokenizer)
    return _default_blocks[template]


def _apply(tokenizer, conversation, tools, add_generation_prompt) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError("the tokenizer has no chat template")
    try:
        return tokenizer.apply_chat_template(
            conversation, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=False
        )
    except Exception as error:  # jinja raises TemplateError/TypeError etc. from the template itself
        raise ChatTemplateError(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from error


def _detect_default_block(tokenizer) -> str | None:
    user = [{"role": "user", "content": _USER_SENTINEL}]
    without = _apply(tokenizer, user, None, True)
    try:
        with_system = _apply(tokenizer, [{"role": "system", "content": _SYSTEM_SENTINEL}, *user], None, True)
    except ChatTemplateError:
        return None  # the template has no system role at all, so it cannot inject one
    if _SYSTEM_SENTINEL not in with_system:
        return None
    pre, post = with_system.split(_SYSTEM_SENTINEL, 1)
    if not (without.startswith(pre) and without.endswith(post) and len(without) >= len(pre) + len(post)):
        return None
    injected = without[len(pre) : len(without) - len(post)]
    if not injected.strip():
        return None
    block_start = _header_start(tokenizer, pre, pre.rfind("system"))
    between = post[: post.index(_USER_SENTINEL)]  # system close + user header
    user_start = _header_start(tokenizer, between, between.rfind("user"))
    return pre[block_start:] + injected + between[:user_start]


def _header_start(tokenizer, text: str, role_at: int) -> int:
    """Where the turn header containing the role name at ``role_at`` begins.

    The header starts at the special token right before the role name
    (``<|im_start|>user``, ``<|start_header_id|>user``), else at the line start.
    """
    if role_at < 0:
        return len(text)
    for token in sorted(_special_tokens(tokenizer), key=len, reverse=True):
        if token and text[:role_at].endswith(token):
            return role_at - len(token)
    line_start = text.rfind("\n", 0, role_at)
    return line_start + 1


def _special_tokens(tokenizer) -> set[str]:
    tokens = set(getattr(tokenizer, "all_special_tokens", []) or [])
    added = getattr(tokenizer, "get_added_vocab", None)
    if added is not None:
        tokens.update(added().keys())
    return tokens
