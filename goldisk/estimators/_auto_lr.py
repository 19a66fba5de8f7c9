"""``lr="auto"`` on the goldisk nets: the learning rate from the curvature at init.

:func:`resolve_auto_lr` runs right after a net is (re-)initialized in ``fit``: it measures
:func:`goldisk.curvature.suggest_lr` on the training data at the initialized module (for a
subspace net, the Hessian in the subspace coordinates it trains) and sets that rate on the
optimizer; ``lr_`` and ``lr_suggestion_`` record it. A number passed as ``lr`` is used as is.
"""

from __future__ import annotations

import torch

__all__ = ["resolve_auto_lr", "optimizer_kwargs", "AUTO_PLACEHOLDER"]

#: The rate the optimizer is built with before ``fit`` has the data to measure one.
AUTO_PLACEHOLDER = 1e-3


def _is_auto(lr) -> bool:
    return isinstance(lr, str) and lr == "auto"


def optimizer_kwargs(net, kwargs: dict) -> dict:
    """skorch's optimizer kwargs with ``lr="auto"`` replaced by a number (the measured
    ``lr_`` once known); any other string is refused with the fix."""
    lr = kwargs.get("lr")
    if _is_auto(lr):
        kwargs["lr"] = getattr(net, "lr_", AUTO_PLACEHOLDER)
    elif isinstance(lr, str):
        raise ValueError(f"lr must be a number > 0 or 'auto', got {lr!r}.")
    return kwargs


def _optimizer_name(net) -> tuple[str, dict]:
    opt = net.optimizer
    cls = getattr(opt, "func", opt)  # functools.partial
    params = net.get_params_for("optimizer") if hasattr(net, "get_params_for") else {}
    if isinstance(cls, type) and issubclass(cls, torch.optim.Adam | torch.optim.AdamW):
        return "adam", {k: params[k] for k in ("betas", "eps") if k in params}
    if isinstance(cls, type) and issubclass(cls, torch.optim.SGD):
        return "sgd", {k: params[k] for k in ("momentum",) if k in params}
    raise ValueError(f"lr='auto' supports optimizer=torch.optim.SGD, Adam or AdamW, got "
                     f"{opt!r}; pass a number as lr.")


def resolve_auto_lr(net, X, y) -> None:
    """Measure and set ``lr_`` when ``net.lr == "auto"`` (no-op otherwise); ``(X, y)`` as
    the module sees them (after ``_prepare_fit``)."""
    if not _is_auto(net.lr):  # (``lr_`` is the rule's or the user's number then)
        net.__dict__.pop("lr_suggestion_", None)
        return
    from .._measured import LogProbabilities, loss_of_criterion
    from ..curvature import suggest_lr

    name, kw = _optimizer_name(net)
    criterion = net.criterion_
    loss = loss_of_criterion(criterion, y)
    module = net.module_
    if isinstance(criterion, torch.nn.NLLLoss):
        module = LogProbabilities(module)
    if name == "adam":
        kw["grad_batch_size"] = net.batch_size if net.batch_size > 0 else None
    suggestion = suggest_lr(module, X, y, name, loss=loss, random_state=net.init_seeds_.train,
                            **kw)
    net.lr_suggestion_ = suggestion
    net.lr_ = float(suggestion.lr)
    for group in net.optimizer_.param_groups:
        group["lr"] = net.lr_
