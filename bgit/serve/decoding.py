"""Per-row decoding: choosing the next token, and turning token ids into text deltas.

Each row samples with its own ``torch.Generator`` seeded by its request, so a seeded request
gives the same tokens whatever else shares its batch (up to the float differences batching
itself can cause).
"""

from __future__ import annotations

import secrets


def make_generator(seed: int | None, device):
    """A generator for one row; a fresh random seed when the request gave none."""
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    return generator


def choose_token(logits, temperature: float, top_p: float, generator) -> int:
    """Greedy when temperature is 0; else sample from softmax(logits / T), nucleus-filtered."""
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p  # the first token always stays
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


class IncrementalText:
    """Token ids in, text deltas out: waits for complete characters (byte-level tokens can split
    one), holds back text that may be the start of a stop string, and cuts at a stop string.

    Decoding keeps a few tokens of context before the new ones (``prefix``): sentencepiece
    tokenizers drop a word's leading space when a slice starts on it.
    """

    def __init__(self, tokenizer, stop: tuple[str, ...] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.prefix = 0   # ids[prefix:read] decode to text already taken
        self.read = 0
        self.text = ""    # all text so far (cut at a stop string once one appears)
        self.sent = 0     # characters of ``text`` handed out
        self.stopped = False

    def _decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> str:
        """Add a token; -> the text that is now safe to send (maybe empty)."""
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.text += after[len(before):]
            self.prefix, self.read = max(self.read - 4, 0), len(self.ids)
        return self._release(final=False)

    def finish(self) -> str:
        """The rest of the text at the end of generation."""
        if not self.stopped:
            before = self._decode(self.ids[self.prefix:self.read])
            after = self._decode(self.ids[self.prefix:])
            if len(after) > len(before):
                self.text += after[len(before):]
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self.stop and not self.stopped:
            start = max(self.sent - max(len(s) for s in self.stop), 0)
            hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                self.text, self.stopped = self.text[: min(hits)], True
        end = len(self.text) if final or self.stopped else len(self.text) - self._held_back()
        out = self.text[self.sent:end]
        self.sent = max(self.sent, end)
        return out

    def _held_back(self) -> int:
        """Length of the longest end of the text that begins some stop string."""
        longest = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
