"""One-shot generation and a chat session with a (scaled) baked model.

The student context has no system text unless one is given: the baked model is meant to
behave as prompted with zero prompt tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable
from bgit.models import render_context

HELP = """commands:
  /help          this help
  /clear         forget the conversation
  /system TEXT   set the system text (empty TEXT removes it) and clear the conversation
  /status        model, bake, scale, system text and turns so far
  /quit          leave (also Ctrl-D)"""


def generate_ids(model, tokenizer, context_ids: list[int], max_tokens: int, seed: int | None = None,
                 temperature: float = 0.0, on_text: Callable[[str], None] | None = None) -> list[int]:
    """Greedy (temperature 0) or seeded sampling; -> new token ids, EOS excluded."""
    import torch

    device = next(model.parameters()).device
    input_ids = torch.tensor([context_ids], device=device)
    if seed is not None:
        torch.manual_seed(seed)
    streamer = _Streamer(tokenizer, on_text) if on_text else None
    kwargs = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 \
        else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                max_new_tokens=max_tokens, pad_token_id=tokenizer.pad_token_id,
                                streamer=streamer, **kwargs)
    new = output[0, len(context_ids):].tolist()
    eos = tokenizer.eos_token_id
    if eos is not None and eos in new:
        new = new[: new.index(eos)]
    return new


class _Streamer:
    """transformers streamer protocol (put/end): prints decoded text as tokens arrive."""

    def __init__(self, tokenizer, on_text):
        self.tokenizer, self.on_text = tokenizer, on_text
        self.ids: list[int] = []
        self.shown = 0
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first sends the prompt
            self.prompt_seen = True
            return
        self.ids.extend(int(v) for v in value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # wait for a complete multi-byte character
            self.on_text(text[self.shown:])
            self.shown = len(text)

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > self.shown:
            self.on_text(text[self.shown:])
        self.shown = len(text)


def answer(model, tokenizer, prompt: str, system: str | None = None, max_tokens: int = 128,
           seed: int | None = None, temperature: float = 0.0) -> dict:
    """One-shot answer to ``prompt``: {'prompt', 'response', 'tokens'}."""

    messages = [{"role": "system", "content": system}] if system else []
    context = render_context(tokenizer, messages, user=prompt)
    ids = generate_ids(model, tokenizer, context, max_tokens, seed=seed, temperature=temperature)
    return {"prompt": prompt, "response": tokenizer.decode(ids, skip_special_tokens=True), "tokens": len(ids)}


@dataclass
class ChatSession:
    model: object
    tokenizer: object
    label: str = ""
    scale: float = 1.0
    system: str | None = None
    max_tokens: int = 256
    history: list[dict] = field(default_factory=list)

    def messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    def reply(self, text: str, on_text: Callable[[str], None] | None = None) -> str:
        context = render_context(self.tokenizer, self.messages(), user=text)
        ids = generate_ids(self.model, self.tokenizer, context, self.max_tokens, on_text=on_text)
        response = self.tokenizer.decode(ids, skip_special_tokens=True)
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": response}]
        return response

    def status(self) -> str:
        system = repr(self.system) if self.system else "none"
        return f"{self.label} scale={self.scale:g} system={system} turns={len(self.history) // 2}"


def run_repl(session: ChatSession, lines: Iterable[str], write: Callable[[str], None],
             prompt: Callable[[], None] | None = None, stream: bool = False) -> int:
    """Drive ``session`` from input lines; -> number of answered messages."""
    answered = 0
    if prompt:
        prompt()
    for raw in lines:
        line = raw.rstrip("\n")
        command, _, argument = line.strip().partition(" ")
        if not line.strip():
            pass
        elif command == "/quit" or command == "/exit":
            break
        elif command == "/help":
            write(HELP + "\n")
        elif command == "/clear":
            session.history.clear()
            write("(conversation cleared)\n")
        elif command == "/system":
            session.system = argument.strip() or None
            session.history.clear()
            write(f"(system text {'set' if session.system else 'removed'}; conversation cleared)\n")
        elif command == "/status":
            write(session.status() + "\n")
        elif command.startswith("/"):
            write(f"unknown command {command}; /help lists them\n")
        else:
            if stream:
                session.reply(line, on_text=write)
                write("\n")
            else:
                write(session.reply(line) + "\n")
            answered += 1
        if prompt:
            prompt()
    return answered
