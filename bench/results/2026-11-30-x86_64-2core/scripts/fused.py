import torch

class TopkTailLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, ids):
        x = logits.float()
        m = x.amax(-1, keepdim=True)
        e = (x - m).exp_()
        s_all = e.sum(-1)
        e_top = e.gather(-1, ids)
        e.scatter_(-1, ids, 0.0)
        s_out = e.sum(-1)
        log_all = s_all.log()
        logq_k = x.gather(-1, ids) - m - log_all.unsqueeze(-1)
        logq_tail = s_out.clamp_min(torch.finfo(torch.float32).tiny).log() - log_all
        ctx.save_for_backward(e, e_top, s_all, s_out, ids)
        ctx.in_dtype = logits.dtype
        return torch.cat([logq_k, logq_tail.unsqueeze(-1)], dim=-1)

    @staticmethod
    def backward(ctx, grad):
        e, e_top, s_all, s_out, ids = ctx.saved_tensors
        g_k, g_tail = grad[:, :-1], grad[:, -1]
        total = grad.sum(-1)
        tail_coef = torch.where(s_out > 0, g_tail / s_out.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
        dx = e * (tail_coef - total / s_all).unsqueeze(-1)
        dx.scatter_add_(-1, ids, g_k - total.unsqueeze(-1) * e_top / s_all.unsqueeze(-1))
        return dx.to(ctx.in_dtype), None
