"""Teacher forcing: a model's logits for given responses, in batches.

Both the eval's KL passes and the rollout's teacher rows (for responses sampled elsewhere)
feed context + response and read the logits that predict each response token. Rows are
right-padded and their common first tokens (a bake's system prompt) run once
(:func:`bgit.train.prefix.shared_prefix`); the output layer runs only at the positions
that predict response tokens. Batches are cut by :func:`bgit.train.data.token_chunks`.
"""

from __future__ import annotations


def forced_logits(model, contexts: list[list[int]], responses: list[list[int]]):
    """Logits [sum of T, V] (float32) predicting every response token, the rows' one after the
    other: the trainer's alignment (position p predicts token p+1). No gradients."""
    import torch

    from bgit.train.data import pad_right
    from bgit.train.loss import response_logits
    from bgit.train.prefix import prefix_cache, shared_prefix

    device = next(model.parameters()).device
    prefix = shared_prefix(model, contexts)
    ids, mask = pad_right([c[prefix:] + r[:-1] for c, r in zip(contexts, responses)], 0)
    rows = torch.cat([torch.full((len(r),), row) for row, r in enumerate(responses)])
    cols = torch.cat([torch.arange(len(r)) + len(c) - prefix - 1 for c, r in zip(contexts, responses)])
    ids, mask, rows, cols = (t.to(device) for t in (ids, mask, rows, cols))
    with torch.no_grad():
        cache = None
        if prefix:
            cache = prefix_cache(model, torch.tensor([contexts[0][:prefix]], device=device), len(contexts))
            mask = torch.cat([torch.ones((len(contexts), prefix), dtype=mask.dtype, device=device), mask], dim=1)
        logits = response_logits(model, ids, mask, rows, cols, cache)
    return logits.float()
