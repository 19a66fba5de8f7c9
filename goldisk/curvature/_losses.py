"""Per-sample losses on logits and their exact Hessians with respect to the logits."""

from __future__ import annotations

import torch

from .._names import LOSSES

__all__ = ["LOSSES", "per_sample_loss", "logit_hessian", "logit_gradient"]



def _check(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")
    return loss


def per_sample_loss(z: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy"):
    """Loss of each sample from logits ``z`` (N, C).

    ``cross_entropy`` uses ``logsumexp(z) - z[y]`` (log-softmax, stable at any scale);
    ``mse`` is the mean over outputs of ``(z - y)^2``, as ``torch.nn.MSELoss`` averages.
    """
    if _check(loss) == "cross_entropy":
        return torch.logsumexp(z, dim=-1) - z.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
    target = y.to(z.dtype).reshape(z.shape)
    return (z - target).pow(2).mean(dim=-1)


def logit_gradient(z: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy"):
    """``d loss_n / d z_n`` for each sample, shape (N, C)."""
    if _check(loss) == "cross_entropy":
        p = torch.softmax(z, dim=-1)
        return p - torch.nn.functional.one_hot(y.long(), z.shape[-1]).to(z.dtype)
    return 2.0 * (z - y.to(z.dtype).reshape(z.shape)) / z.shape[-1]


def logit_hessian(z: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy"):
    """``d^2 loss_n / d z_n^2`` for each sample, shape (N, C, C).

    Softmax cross-entropy: ``diag(p) - p p^T`` (independent of the label);
    mean squared error: ``2 I / C``.
    """
    if _check(loss) == "cross_entropy":
        p = torch.softmax(z, dim=-1)
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    n, c = z.shape[0], z.shape[-1]
    eye = torch.eye(c, dtype=z.dtype, device=z.device)
    return (2.0 / c) * eye.expand(n, c, c)
