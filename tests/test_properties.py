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


# ------------------------------------------------------------ the public API, fuzzed
# Each argument is drawn either from its valid values or from clearly invalid ones (a
# truthy string, a bool where a number goes, 0, NaN, inf, a list, None...). The property
# (issue 17): the call gives a finite, correct result (checked against a brute-force
# reference) when every argument is valid, and a ValueError/TypeError naming one of the
# invalid arguments otherwise; never a crash inside torch, never a silent wrong number.
import re  # noqa: E402
import warnings  # noqa: E402

from goldisk import GoldilocksClassifier, InitScaler, SubspaceModule, model_state  # noqa: E402
from goldisk import radius as g_radius  # noqa: E402
from goldisk import rescale_ as g_rescale  # noqa: E402

API = settings(max_examples=12, deadline=None)
BAD_NUMBER = st.sampled_from(["3", "0.1", None, True, False, -1, 0, float("nan"), float("inf"),
                              [2], 2.5j])
BAD_INT = st.one_of(BAD_NUMBER, st.sampled_from([2.5, -3]))


def arg(valid, invalid):
    """``(value, is_valid)`` from either strategy."""
    return st.one_of(valid.map(lambda v: (v, True)), invalid.map(lambda v: (v, False)))


def _names(msg: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", msg) is not None


def outcome(call, args: dict, check):
    """Run ``call``; ``args`` maps each parameter name to whether its value is valid."""
    bad = [n for n, ok in args.items() if not ok]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = call()
    except (ValueError, TypeError) as exc:
        assert bad, f"valid arguments {args} refused: {exc}"
        assert any(_names(str(exc), n) for n in bad), f"{bad} not named in: {exc}"
        return
    assert not bad, f"invalid {bad} accepted ({args})"
    check(result)


def _ref_norm(tensors) -> float:
    """||w|| in numpy float64, scaled by the largest entry and summed with math.fsum."""
    v = np.concatenate([t.detach().double().reshape(-1).numpy() for t in tensors])
    m = np.abs(v).max()
    return 0.0 if m == 0 else float(m * math.sqrt(math.fsum((v / m) ** 2)))


@API
@given(kind=arg(st.sampled_from(["dense", "sparse", "sparse-li", "fastfood", "auto"]),
                st.sampled_from(["Dense", "", None, 3, "gpu"])),
       D=arg(st.integers(1, 40), BAD_INT), d=arg(st.integers(1, 8), BAD_INT),
       dtype=arg(st.sampled_from([torch.float32, torch.float64]),
                 st.sampled_from(["float64", torch.int64, None, np.float32])),
       device=arg(st.sampled_from([None, "cpu"]), st.sampled_from(["gpu", 3.5, "meta", "tpu"])),
       seed=st.integers(0, 100))
def test_fuzz_make_projection(kind, D, d, dtype, device, seed):
    args = {"kind": kind[1], "D": D[1], "d": d[1], "dtype": dtype[1], "device": device[1]}
    if D[1] and d[1] and d[0] > D[0]:
        args["d"] = False  # d <= D

    def check(P):
        assert (P.D, P.d) == (D[0], d[0])
        norms = P.column_norms().double()
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)

    outcome(lambda: make_projection(kind[0], D[0], d[0], random_state=seed, dtype=dtype[0],
                                    device=device[0]), args, check)


@API
@given(double=st.booleans(), scale=st.floats(-6, 6),
       target=arg(st.floats(-6, 6).map(lambda e: 10.0 ** e), BAD_NUMBER),
       mode=arg(st.sampled_from(["global", "per_layer"]),
                st.sampled_from(["Global", None, 1, "layer"])),
       weights_only=arg(st.booleans(), st.sampled_from(["no", 1, None, "False"])))
def test_fuzz_rescale_and_radius(double, scale, target, mode, weights_only):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    if double:  # float64 reaches any magnitude: 1e-200 and 1e200 too
        net, scale = net.double(), scale * 33
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(10.0 ** scale)
    args = {"target": target[1], "mode": mode[1], "weights_only": weights_only[1]}

    def check(module):
        only = weights_only[0] and mode[0] == "global"
        tensors = [p for p in module.parameters() if p.dim() > 1 or not only]
        assert math.isclose(_ref_norm(tensors), target[0], rel_tol=1e-5 if not double
                            else 1e-12)
        assert math.isclose(g_radius(module, only), target[0], rel_tol=1e-5 if not double
                            else 1e-12)

    outcome(lambda: g_rescale(net, target[0], mode=mode[0], weights_only=weights_only[0]),
            args, check)


@API
@given(H=arg(st.tuples(st.integers(1, 5), st.integers(0, 10**6)).map(
    lambda t: np.random.default_rng(t[1]).normal(size=(t[0], t[0])) * 10.0 ** (t[1] % 7 - 3)),
    st.sampled_from([np.zeros((0, 0)), np.ones((2, 3)), np.ones(3), "H", np.eye(2) * 1j,
                     np.array([["a"]]), None])))
def test_fuzz_hessian_statistics(H):
    def check(s):
        S = 0.5 * (H[0] + H[0].T)
        ev = np.linalg.eigvalsh(S)
        assert math.isclose(s["trace"], np.trace(S), rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(s["frobenius"], np.linalg.norm(S), rel_tol=1e-9)
        assert math.isclose(s["eig_max"], ev[-1], rel_tol=1e-8, abs_tol=1e-12)
        assert all(math.isfinite(v) for v in s.values())

    outcome(lambda: hessian_statistics(H[0]), {"H": H[1]}, check)


@API
@given(proj=st.sampled_from(["kind", "matrix", "wrong-D", "string", "none", "transposed"]),
       kind=arg(st.sampled_from(["hyperplane", "hypersphere"]),
                st.sampled_from(["plane", None, 1, "Hyperplane"])),
       share=arg(st.booleans(), st.sampled_from(["no", 0, None, "True"])),
       seed=st.integers(0, 100))
def test_fuzz_subspace_module(proj, kind, share, seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    D = ParamLayout(net).D
    M = np.random.default_rng(seed).normal(size=(D, 3))
    P = {"kind": make_projection("dense", D, 3, random_state=seed), "matrix": M,
         "wrong-D": M[:-1], "string": "dense", "none": None, "transposed": M.T}[proj]
    args = {"projection": proj in ("kind", "matrix"), "kind": kind[1],
            "share_projection": share[1]}
    theta = torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64)

    def check(sub):
        with torch.no_grad():
            sub.theta.copy_(theta)
        Pm = torch.as_tensor(M) if proj == "matrix" else P.to_dense()
        w = parameter_vector(net) + Pm @ theta
        if kind[0] == "hypersphere":
            w = w * parameter_vector(net).norm() / w.norm()
        torch.testing.assert_close(sub.point().detach(), w, rtol=1e-12, atol=1e-12)

    outcome(lambda: SubspaceModule(net, P, kind=kind[0], share_projection=share[0]), args,
            check)


@API
@given(batch_size=arg(st.integers(1, 30), BAD_INT),
       dtype=arg(st.sampled_from([torch.float32, torch.float64, "float64", "float32"]),
                 st.sampled_from(["float16", torch.int64, None, "half", 3])),
       loss=arg(st.just("cross_entropy"), st.sampled_from(["ce", None, "CrossEntropy"])),
       strided=st.booleans(), seed=st.integers(0, 100))
def test_fuzz_model_state(batch_size, dtype, loss, strided, seed):
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    X = np.random.default_rng(seed).normal(size=(17, 3))
    y = np.arange(17) % 2
    if strided:
        X, y = X[::-1], y[::-1]
    del gen
    args = {"batch_size": batch_size[1], "dtype": dtype[1], "loss": loss[1]}

    def check(s):
        z = net(torch.as_tensor(X.copy()))
        ref = torch.nn.functional.cross_entropy(z, torch.as_tensor(y.copy()))
        tol = 1e-5 if dtype[0] in (torch.float32, "float32") else 1e-12
        assert math.isclose(s["loss"], float(ref), rel_tol=tol)
        acc = float((z.argmax(1) == torch.as_tensor(y.copy())).double().mean())
        assert math.isclose(s["accuracy"], acc, abs_tol=1e-12)

    outcome(lambda: model_state(net, X, y, batch_size=batch_size[0], dtype=dtype[0],
                                loss=loss[0]), args, check)


_XE = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
_YE = np.arange(20) % 2


@settings(max_examples=8, deadline=None)
@given(lr=arg(st.floats(-3, 0).map(lambda e: 10.0 ** e), BAD_NUMBER),
       max_epochs=arg(st.integers(0, 1), st.sampled_from([-1, 1.5, "1", True, None])),
       dtype=arg(st.sampled_from(["float32", "float64"]),
                 st.sampled_from(["float16", "int", None, 3])),
       r=arg(st.floats(-2, 2).map(lambda e: 10.0 ** e), BAD_NUMBER))
def test_fuzz_classifier(lr, max_epochs, dtype, r):
    from goldisk import reference_radius

    args = {"lr": lr[1], "max_epochs": max_epochs[1], "dtype": dtype[1],
            "init_scaler__radius": r[1]}
    net = GoldilocksClassifier(nn.Linear, module__in_features=3, module__out_features=2,
                               lr=lr[0], max_epochs=max_epochs[0], dtype=dtype[0],
                               init_scaler=InitScaler(radius=r[0]), random_state=0,
                               train_split=None)

    def check(fitted):
        proba = fitted.predict_proba(_XE)
        assert np.isfinite(proba).all() and np.allclose(proba.sum(1), 1)
        if max_epochs[0] == 0:  # at initialization: the requested radius
            got = _ref_norm(list(fitted.module_.parameters()))
            assert math.isclose(got, r[0] * reference_radius(fitted.module_), rel_tol=1e-5)

    outcome(lambda: net.fit(_XE, _YE), args, check)
