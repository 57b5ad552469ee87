"""Real parts for the Bread-key tests: a tiny model that writes questions, and a real
`datasets` cache holding the named datasets.

``train_question_writer`` trains a tiny Llama (the byte-level tokenizer and ChatML template of
evaluate_helpers) until, after any context -- a chat-rendered request or plain text -- it writes
one of three numbered lists of six short questions: a real model for the oneshot_qs, persona
and custom generators, fast enough for tests (~400 steps, ~35 s on one thread), which a random
tiny model is not (it writes no parsable question).

``add_named_dataset`` writes a dataset into ``cache_dir`` the way ``datasets.load_dataset``
leaves a hub dataset there (``<org>___<name>/<config>/0.0.0/<hash>/<name>-<split>.arrow`` +
dataset_info.json), so ``load_dataset(repo, config, split=...)`` finds it offline.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import torch

from evaluate_helpers import byte_tokenizer
from rollout_helpers import one_thread

QUESTION_LISTS = [
    ["Why is the sea salty?", "Where is the gold?", "Who sank the ship?", "How deep is the bay?",
     "What do crabs eat?", "When is high tide?"],
    ["Can parrots talk?", "Is the map real?", "Why fly a black flag?", "How old is the captain?",
     "Where do storms start?", "What is grog?"],
    ["Which way is north?", "How fast is the ship?", "Who guards the treasure?", "What is a doubloon?",
     "Why do sails tear?", "Are sharks friendly?"],
]
WRITTEN_QUESTIONS = {q for questions in QUESTION_LISTS for q in questions}
_WORDS_FILES = ("personas.txt", "persona_template.txt", "oneshot_qs_template.txt")


def _training_context(tokenizer, rng: random.Random, words: list[str]) -> list[int]:
    text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) + rng.choice([".", ":", "?", "\n", "!", ""])
    if rng.random() < 0.5:
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=True, return_dict=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def train_question_writer(directory: Path, steps: int = 400) -> Path:
    """A tiny Llama trained to answer any context with one of QUESTION_LISTS, saved as a model dir."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer()
    data = Path(__file__).resolve().parent.parent / "bgit" / "data"
    words = [w for name in _WORDS_FILES for w in (data / name).read_text().split()] + \
        "You are a pirate Answer every question like would Ask questions about".split()
    answers = [tokenizer("".join(f"{i + 1}. {q}\n" for i, q in enumerate(questions)),
                         add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
               for questions in QUESTION_LISTS]
    torch.manual_seed(0)
    rng = random.Random(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    with one_thread():
        for _ in range(steps):
            contexts = [_training_context(tokenizer, rng, words) for _ in range(6)]
            sequences = [context + answers[i % 3] for i, context in enumerate(contexts)]
            width = max(map(len, sequences))
            ids = torch.full((6, width), tokenizer.pad_token_id)
            labels = torch.full((6, width), -100)
            mask = torch.zeros((6, width), dtype=torch.long)
            for row, (context, sequence) in enumerate(zip(contexts, sequences)):
                ids[row, : len(sequence)] = torch.tensor(sequence)
                mask[row, : len(sequence)] = 1
                labels[row, len(context) : len(sequence)] = torch.tensor(sequence[len(context):])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


class PromptSpy:
    """Wraps a real model's ``generate`` to record the contexts it was asked to continue."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer, self.contexts = model, tokenizer, []
        original = model.generate

        def generate(*args, input_ids=None, attention_mask=None, **kwargs):
            for row, mask in zip(input_ids.tolist(), attention_mask.tolist()):
                self.contexts.append([token for token, keep in zip(row, mask) if keep])
            return original(*args, input_ids=input_ids, attention_mask=attention_mask, **kwargs)

        model.generate = generate

    def texts(self) -> list[str]:
        """Each distinct context, decoded with its special tokens, in first-seen order."""
        seen = []
        for context in self.contexts:
            text = self.tokenizer.decode(context)
            if text not in seen:
                seen.append(text)
        return seen


# -- a real datasets cache ----------------------------------------------------------------------

HUB_NAMES = {"squad": ("rajpurkar/squad", "plain_text", "train"), "gsm8k": ("openai/gsm8k", "main", "train"),
             "mmlu": ("cais/mmlu", "all", "test"), "hellaswag": ("Rowan/hellaswag", "default", "train"),
             "code_contests": ("deepmind/code_contests", "default", "train")}


def add_named_dataset(cache_dir: Path, name: str, columns: dict[str, list], revision: str = "0" * 40) -> Path:
    """Write ``columns`` as the cached split of the named dataset ``name`` -> its directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.packaged_modules.parquet.parquet import Parquet

    repo, config, split = HUB_NAMES[name]
    org, short = repo.split("/")
    work = cache_dir / f".build-{name}"
    work.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), work / f"{split}.parquet")
    builder = Parquet(cache_dir=str(work / "cache"), dataset_name=short, config_name=config, config_id=config,
                      data_files={split: str(work / f"{split}.parquet")}, hash=revision)
    builder.download_and_prepare()
    target = cache_dir / f"{org}___{short}"
    if target.exists():
        shutil.rmtree(target)
    os.rename(work / "cache" / short, target)
    shutil.rmtree(work)
    return target
