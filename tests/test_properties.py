"""Property tests (hypothesis) over random small models, inputs and subspaces."""

from __future__ import annotations

import math

import numpy as np
import torch
from conftest import reference_logit_gradient, reference_logit_hessian, reference_loss
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from goldisk import hessian_statistics, hutchinson, subspace_hessian
from goldisk._flat import ParamLayout, parameter_vector
from goldisk.projections import make_projection, orthogonality_error

F64 = torch.float64
SETTINGS = settings(max_examples=15, deadline=None)


class Scale(nn.Module):
    """Multiply the outputs by a constant (a buffer: no parameters are added)."""

    def __init__(self, c: float):
        super().__init__()
        self.register_buffer("c", torch.tensor(c, dtype=F64))

    def forward(self, z):
        return z * self.c


@st.composite
def problems(draw, max_d=6):
    """A random small MLP (float64), data, and a random subspace of it."""
    seed = draw(st.integers(0, 2**31 - 1))
    n_in = draw(st.integers(1, 4))
    widths = draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))
    classes = draw(st.integers(2, 4))
    act = draw(st.sampled_from([nn.Tanh, nn.ReLU, nn.Softplus]))
    bias = draw(st.booleans())
    scale = draw(st.sampled_from([0.1, 0.7, 2.0]))
    n = draw(st.integers(1, 20))
    gen = torch.Generator().manual_seed(seed)
    layers, prev = [], n_in
    for w in widths:
        layers += [nn.Linear(prev, w, bias=bias), act()]
        prev = w
    layers.append(nn.Linear(prev, classes, bias=bias))
    net = nn.Sequential(*layers).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=F64) * scale)
    X = torch.randn(n, n_in, generator=gen, dtype=F64)
    y = torch.randint(0, classes, (n,), generator=gen)
    D = ParamLayout(net).D
    d = draw(st.integers(1, min(D, max_d)))
    kind = draw(st.sampled_from(["dense", "sparse", "fastfood"]))
    P = make_projection(kind, D, d, random_state=seed)
    return net, X, y, P


def _theta_functions(net, P, kind):
    """``w(theta)`` and the logits ``z(theta)`` of the subspace through the current point."""
    layout = ParamLayout(net)
    w0 = parameter_vector(net).to(F64)

    def w_of(theta):
        w = w0 + P(theta)
        return w * (w0.norm() / w.norm()) if kind == "hypersphere" else w

    return lambda theta, X: layout.call(net, w_of(theta), X)


@SETTINGS
@given(problems(), st.sampled_from(["hyperplane", "hypersphere"]))
def test_trace_ratio_within_sqrt_d(problem, kind):
    net, X, y, P = problem
    res = subspace_hessian(net, X, y, P, kind=kind)
    bound = math.sqrt(P.d) * (1 + 1e-12)
    for M in (res.H, res.G, res.Hterm):
        stats = hessian_statistics(M) if float(M.abs().max()) > 0 else None
        if stats is not None:
            assert abs(stats["trace_ratio"]) <= bound
            assert 0.0 <= stats["frac_positive"] <= 1.0
            tol = 1e-12 * max(1.0, abs(stats["eig_min"]), abs(stats["eig_max"]))
            assert stats["eig_min"] - tol <= stats["trace"] / P.d <= stats["eig_max"] + tol


@SETTINGS
@given(problems(), st.floats(1e-3, 1e3), st.sampled_from(["hyperplane", "hypersphere"]))
def test_statistics_invariant_to_scaling_the_loss(problem, c, kind):
    """The Hessian of ``c * L`` is ``c * H`` (c > 0), so every scale-free statistic is
    unchanged. ``c * L`` is realized exactly with the squared error: scaling the outputs and
    the targets by ``sqrt(c)`` multiplies the loss by ``c`` and adds no parameter."""
    net, X, y, P = problem
    C = net[-1].out_features
    target = torch.nn.functional.one_hot(y, C).to(F64)
    ref = subspace_hessian(net, X, target, P, kind=kind, loss="mse")
    scaled_net = nn.Sequential(net, Scale(math.sqrt(c)))
    res = subspace_hessian(scaled_net, X, math.sqrt(c) * target, P, kind=kind, loss="mse")
    tol = 1e-9 * max(1.0, float(ref.H.abs().max()) * c)
    assert float((res.H - c * ref.H).abs().max()) <= tol
    assert float((res.G - c * ref.G).abs().max()) <= tol
    assert float(res.loss) == np_approx(c * float(ref.loss))
    for M_ref, M in ((ref.H, res.H), (ref.G, res.G)):
        if float(M_ref.abs().max()) < 1e-8:
            continue
        a, b = hessian_statistics(M_ref), hessian_statistics(M)
        assert b["trace_ratio"] == np_approx(a["trace_ratio"], abs_=1e-7)
        # eigenvalues within round-off of 0 may flip: compare with a margin
        eig = torch.linalg.eigvalsh(0.5 * (M_ref + M_ref.T))
        if float(eig.abs().min()) > 1e-6 * float(eig.abs().max()):
            assert b["frac_positive"] == a["frac_positive"]
    # and for any symmetric matrix: statistics of c*H equal those of H
    a, b = hessian_statistics(ref.H + torch.eye(P.d, dtype=F64)), hessian_statistics(
        c * (ref.H + torch.eye(P.d, dtype=F64)))
    assert b["trace_ratio"] == np_approx(a["trace_ratio"], abs_=1e-9)
    assert b["frac_positive"] == a["frac_positive"]


def np_approx(x, abs_=1e-9, rel=1e-9):
    import pytest

    return pytest.approx(x, abs=abs_, rel=rel)


@SETTINGS
@given(problems(max_d=5), st.sampled_from(["hyperplane", "hypersphere"]),
       st.sampled_from(["cross_entropy", "mse"]))
def test_H_is_G_plus_Hterm_and_G_is_psd(problem, kind, loss):
    """``H = G + H-term`` with both parts computed independently by brute force in theta:
    ``G = J^T A J`` from the explicit Jacobian ``J = dz/dtheta`` and ``A = d^2 l/dz^2``,
    and ``H-term`` as the Hessian of ``sum_n g_n . z_n(theta) / N`` with the logit
    gradients ``g_n`` held fixed. ``G`` is positive semi-definite."""
    net, X, y, P = problem
    C = net[-1].out_features
    yy = y if loss == "cross_entropy" else torch.nn.functional.one_hot(y, C).to(F64)
    res = subspace_hessian(net, X, yy, P, kind=kind, loss=loss)
    z_of = _theta_functions(net, P, kind)
    theta0 = torch.zeros(P.d, dtype=F64)
    N = len(X)

    H = torch.autograd.functional.hessian(
        lambda t: reference_loss(z_of(t, X), yy, loss).mean(), theta0)
    J = torch.autograd.functional.jacobian(lambda t: z_of(t, X), theta0)  # (N, C, d)
    z0 = z_of(theta0, X).detach()
    A = reference_logit_hessian(z0, yy, loss)
    G = torch.einsum("ncd,nce,nef->df", J, A, J) / N
    g = reference_logit_gradient(z0, yy, loss)
    Hterm = torch.autograd.functional.hessian(lambda t: (g * z_of(t, X)).sum() / N, theta0)

    scale = max(1.0, float(H.abs().max()))
    assert float((H - (G + Hterm)).abs().max()) <= 1e-9 * scale  # the identity itself
    assert float((res.H - H).abs().max()) <= 1e-9 * scale
    assert float((res.G - G).abs().max()) <= 1e-9 * scale
    assert float((res.Hterm - Hterm).abs().max()) <= 1e-9 * scale
    assert torch.equal(res.G + res.Hterm, res.H) or float(
        (res.G + res.Hterm - res.H).abs().max()) <= 1e-12 * scale
    eig = torch.linalg.eigvalsh(0.5 * (res.G + res.G.T))
    assert float(eig.min()) >= -1e-10 * max(float(eig.abs().max()), 1e-300)


@SETTINGS
@given(st.sampled_from(["dense", "sparse", "sparse-li", "fastfood"]),
       st.integers(100, 3000), st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_projections_are_near_orthonormal(kind, D, d, seed):
    P = make_projection(kind, D, d, random_state=seed)
    err = orthogonality_error(P)
    assert err["max_norm_dev"] < 1e-12  # unit columns, exactly
    if kind == "dense":
        assert err["max_offdiag"] < 1e-12
        assert abs(err["sv_min"] - 1) < 1e-12 and abs(err["sv_max"] - 1) < 1e-12
        return
    gram = P.gram()
    off = gram - torch.diag_embed(torch.diagonal(gram))
    # random unit vectors in R^D: inner products of order 1/sqrt(D)
    if d > 1:
        rms = float(off.pow(2).sum() / (d * (d - 1))) ** 0.5
        assert rms * math.sqrt(D) < 3.0
        assert err["max_offdiag"] < min(1.0, 16 / math.sqrt(D))
    # Gershgorin: the singular values^2 lie within 1 +- the largest off-diagonal row sum
    radius = float(off.abs().sum(1).max())
    assert 1 - radius - 1e-12 <= err["sv_min"] ** 2 <= err["sv_max"] ** 2 <= 1 + radius + 1e-12
    assert err["sv_min"] > 0  # no all-zero or repeated column: full column rank here
    assert bool((P.to_dense().abs().sum(0) > 0).all())


@SETTINGS
@given(problems(max_d=1), st.integers(0, 2**31 - 1))
def test_hutchinson_is_unbiased_within_its_error(problem, seed):
    """The mean of many independent Hutchinson runs is within 4 standard errors of the
    exact full-space trace and squared Frobenius norm (of H and of G)."""
    net, X, y, _ = problem
    exact = subspace_hessian(net, X, y)  # projection=None: the exact D x D Hessian
    runs = [hutchinson(net, X, y, n_probes=8, random_state=seed + k) for k in range(16)]
    for prefix, M in (("", exact.H), ("g_", exact.G)):
        for key, value in (("trace", float(torch.trace(M))),
                           ("frobenius2", float((M * M).sum()))):
            est = np.array([r[prefix + key] for r in runs])
            se = est.std(ddof=1) / math.sqrt(len(est))
            assert abs(est.mean() - value) <= 4 * se + 1e-9 * max(1.0, abs(value)), (
                prefix + key, est.mean(), value, se)
