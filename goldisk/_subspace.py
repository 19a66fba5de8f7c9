"""Train a network only inside a random hyperplane or hypersphere through its init point."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ._checks import check_bool
from ._flat import ParamLayout, nonfinite_parameters, parameter_vector, safe_norm
from ._names import SUBSPACE_KINDS as KINDS
from .projections import Projection, as_projection

__all__ = ["SubspaceModule"]



def _norm(w: torch.Tensor, keepdim: bool = False, moderate: bool = False) -> torch.Tensor:
    """``||w||`` over the last axis, a scaled sum of squares (see
    :func:`goldisk._flat.safe_norm`): float64 weights x 1e-200 no longer read 0, nor
    x 1e160 inf. ``moderate``: the caller knows ``||w||`` lies well inside float64's
    range, where the plain ``vector_norm`` (3x cheaper with its backward at D = 2e5) is
    exact."""
    if moderate and w.dtype == torch.float64:
        return torch.linalg.vector_norm(w, dim=-1, keepdim=keepdim)
    return safe_norm(w, dim=-1, keepdim=keepdim)


#: radii between these take float64's plain norm (its squares neither under- nor overflow)
_MODERATE = (1e-100, 1e100)


class SubspaceModule(nn.Module):
    """Wrap ``module`` so that its only trainable parameter is ``theta`` in R^d.

    Hyperplane (Li et al. 2018; Fort & Scherlis 2019): ``w = w0 + P theta``.

    Hypersphere: ``w = r0 (w0 + P theta) / ||w0 + P theta||`` with ``r0 = ||w0||``. We use
    this *parametrization* rather than a projected update (Chang: remove the radial
    gradient, renormalize after each step) because (i) the radius equals ``r0`` exactly
    for every ``theta``, whatever the optimizer (Adam's per-coordinate steps break the
    tangency a projected update relies on), (ii) the chain rule through the normalization
    removes the radial component of the gradient automatically, which is the projected
    update to first order, and (iii) curvature on the sphere is then just the Hessian in
    ``theta`` — no custom optimizer step is needed.

    ``theta`` starts at 0, so the wrapped network starts exactly at ``w0``. ``w0`` and the
    projection are buffers: ``.to(device)``, ``state_dict``, ``deepcopy`` and pickling
    all work; the state dict also holds the frozen parameters and ``kind`` (loading a
    hypersphere's state into a hyperplane module is refused). The wrapped module's own
    parameters are turned into buffers in a private copy (the caller's module is not
    modified); the trainable ones are non-persistent (``w0`` and ``theta`` hold them).
    ``w`` is the vector of its trainable parameters (:func:`goldisk.radius`'s): frozen ones
    (``requires_grad=False``) stay at their values, and a parameter shared by several
    layers moves everywhere at once.

    Parameters
    ----------
    module : torch.nn.Module
        Returns logits. Its current parameters are ``w0``.
    projection : goldisk.projections.Projection, or a D x d tensor or array
        Maps R^d to R^D, with ``D`` the number of trainable parameters of ``module``. A
        matrix is used as it is (a :class:`~goldisk.projections.MatrixProjection`: its
        columns are not normalized), so that a subspace of other code can be reproduced.
    kind : {"hyperplane", "hypersphere"}
    share_projection : bool, default=False
        Use ``projection`` itself rather than a copy. Saves memory for a large dense
        projection the caller does not use otherwise; ``.double()``, ``.to(...)`` and
        ``load_state_dict`` on the module then change that object too.

    Examples
    --------
    >>> from goldisk.projections import make_projection
    >>> net = torch.nn.Linear(4, 3)
    >>> sub = SubspaceModule(net, make_projection("dense", 15, 2, random_state=0))
    >>> [name for name, _ in sub.named_parameters()]
    ['theta']
    >>> torch.allclose(sub(torch.ones(1, 4)), net(torch.ones(1, 4)))
    True
    """

    def __init__(self, module: nn.Module, projection: nn.Module, kind: str = "hyperplane",
                 share_projection: bool = False):
        super().__init__()
        if not isinstance(kind, str) or kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        share_projection = check_bool(share_projection, "share_projection")
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        base = copy.deepcopy(module)
        self.layout = ParamLayout(base)
        if self.layout.D == 0:
            what = "no trainable parameters (requires_grad=True)" if any(
                True for _ in base.parameters()) else "no parameters"
            raise ValueError(f"module has {what}; a subspace of nothing cannot be trained.")
        w0 = parameter_vector(base).clone()
        if not bool(torch.isfinite(w0).all()):
            raise ValueError(f"module has NaN or infinite parameters "
                             f"({', '.join(nonfinite_parameters(base)[:3])}); a subspace "
                             "through them is undefined: re-initialize the module.")
        if not isinstance(projection, Projection):  # the user's own D x d matrix
            projection, share_projection = as_projection(projection, self.layout.D), True
        if projection.D != self.layout.D:
            raise ValueError(
                f"projection maps to D={projection.D} but the module has D={self.layout.D} "
                "trainable parameters; build the projection with D=<number of trainable "
                "parameters>."
            )
        # Every parameter becomes one non-persistent buffer, registered at each of its
        # places (a weight tied between layers stays tied); forward puts the views of w in
        # the trainable ones (the layout), frozen ones (requires_grad=False) stay at w0.
        places, params = {}, {}
        for path, sub in base.named_modules(remove_duplicate=False):
            for leaf, p in sub._parameters.items():
                if p is not None:
                    places.setdefault(id(p), []).append((path, leaf))
                    params[id(p)] = p
        aliases = []
        for path, sub in base.named_modules(remove_duplicate=False):
            for leaf, b in sub._buffers.items():  # a buffer that is a parameter is a place
                if b is not None and id(b) in places:  # (register_buffer("a", l.weight))
                    places[id(b)].append((path, leaf))
                    aliases.append((path, leaf))
        #: places that were buffers holding a parameter (materialize keeps them buffers)
        self._buffer_places = frozenset(aliases)
        names = set(self.layout.names)
        trainable = {id(p): name for name, p in base.named_parameters() if name in names}
        for key, where in places.items():
            value = params[key].detach().clone()
            for path, leaf in where:
                sub = base.get_submodule(path)
                sub._parameters.pop(leaf, None)
                if sub._buffers.get(leaf) is params[key]:  # the alias now holds the copy
                    sub._buffers[leaf] = value
                elif leaf not in sub._buffers:  # frozen ones are saved with the module
                    sub.register_buffer(leaf, value, persistent=key not in trainable)
        #: each parameter's places, in named_parameters order, and its layout name (None:
        #: frozen)
        self._places = [(tuple(where), trainable.get(key)) for key, where in places.items()]
        index = {name: i for i, name in enumerate(self.layout.names)}
        #: (owner path, attribute, position in the layout) of every place forward fills
        self._slots = tuple((path, leaf, index[name]) for where, name in self._places
                            if name is not None for path, leaf in where)
        self.kind = kind
        self.base = base
        if not share_projection:  # the caller's object never changes with the module
            projection = copy.deepcopy(projection)
        if any(b.dtype != w0.dtype or b.device != w0.device for b in projection.buffers()
               if b.is_floating_point()):
            projection = projection.to(dtype=w0.dtype, device=w0.device)
        self.projection = projection
        self.register_buffer("w0", w0)
        self.register_buffer("r0", _norm(w0))  # (scaled: see _norm)
        self._moderate = _MODERATE[0] < float(self.r0) < _MODERATE[1]
        if kind == "hypersphere" and float(self.r0) == 0.0:
            raise ValueError("a hypersphere through w0 = 0 has radius 0; initialize the module.")
        self.theta = nn.Parameter(torch.zeros(projection.d, dtype=w0.dtype, device=w0.device))

    def get_extra_state(self):
        return {"kind": self.kind, "D": self.D, "d": self.d}

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        before = len(missing_keys)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
        # files saved before the kind was stored load as before (no check)
        if prefix + "_extra_state" in missing_keys[before:]:
            missing_keys.remove(prefix + "_extra_state")

    def set_extra_state(self, state):
        mine = self.get_extra_state()
        if state is not None and state != mine:
            raise ValueError(f"this state dict is of a SubspaceModule with {state}, not "
                             f"{mine}; build the module with the same kind and sizes.")

    @property
    def d(self) -> int:
        return self.projection.d

    @property
    def D(self) -> int:
        return self.layout.D

    def point(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """The full parameter vector ``w(theta)`` (the current ``theta`` by default)."""
        theta = self.theta if theta is None else theta
        w = self.w0 + self.projection(theta)
        if self.kind == "hypersphere":  # each point of a batch of thetas on the sphere
            w = w * (self.r0 / _norm(w, True, getattr(self, "_moderate", False)))
        return w

    def _apply(self, fn, recurse=True):
        # A frozen parameter with several places holds one tensor at all of them; a move or
        # cast makes one copy per place, so they are tied again to the first place's copy
        # (load_state_dict may fill only the persistent ones). Trainable places are
        # overwritten by forward anyway.
        out = super()._apply(fn, recurse)
        for where, name in getattr(self, "_places", ()):
            if name is None and len(where) > 1:
                first = self.base.get_submodule(where[0][0])._buffers[where[0][1]]
                for path, leaf in where[1:]:
                    self.base.get_submodule(path)._buffers[leaf] = first
        return out

    def forward(self, x, *args, **kwargs):
        # What ``torch.func.functional_call(self.base, params, ...)`` does, for the one case
        # needed here (every name is a plain buffer of ``base``), at a fraction of its cost
        # (docs/performance.md, "Design notes"): put the views of ``w`` in place of the buffers,
        # call ``base``, put the buffers back. One ``split`` rather than a slice per tensor:
        # its backward is a single ``cat``, where slices would each write their gradient into
        # a zero D-vector and add them up.
        w = self.point()
        views = [part.reshape(*w.shape[:-1], *shape) for part, shape in
                 zip(w.split(self.layout.numels, dim=-1), self.layout.shapes, strict=True)]
        slots = [(self.base.get_submodule(path), leaf, i) for path, leaf, i in self._slots]
        saved = [module._buffers[leaf] for module, leaf, _ in slots]
        try:
            for module, leaf, i in slots:
                module._buffers[leaf] = views[i]
            return self.base(x, *args, **kwargs)
        finally:
            for (module, leaf, _), tensor in zip(slots, saved, strict=True):
                module._buffers[leaf] = tensor

    def radius(self) -> float:
        """Current radius ``||w(theta)||``."""
        return float(_norm(self.point().detach()))

    def materialize(self) -> nn.Module:
        """A plain copy of the wrapped module with real parameters at ``w(theta)`` (frozen
        ones at ``w0``, still frozen; tied ones still tied)."""
        net = copy.deepcopy(self.base)
        values = self.layout.unflatten(self.point().detach())
        for where, name in self._places:
            path, leaf = where[0]
            if name is None:
                value = net.get_submodule(path)._buffers[leaf].clone()
                param = nn.Parameter(value, requires_grad=False)
            else:
                param = nn.Parameter(values[name].clone())
            for path, leaf in where:
                target = net.get_submodule(path)
                if (path, leaf) in getattr(self, "_buffer_places", ()):
                    target._buffers[leaf] = param  # a buffer holding the parameter, as before
                    continue
                target._buffers.pop(leaf, None)
                target._non_persistent_buffers_set.discard(leaf)
                target.register_parameter(leaf, param)
        return net

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, D={self.D}, d={self.d}"
