"""Init-time statistics against values computed by hand (numpy, float64) on tiny nets."""

import numpy as np
import pytest
import torch

from goldisk.curvature import (
    INIT_STATISTICS,
    curvature_statistics,
    gradient_norm,
    grasp,
    hessian_statistics,
    init_statistics,
    jacob_cov,
    ntk_condition_number,
    snip,
    subspace_hessian,
    synflow,
)

W = np.array([[0.5, -1.0, 0.25], [0.3, 0.2, -0.7]])  # Linear(3, 2), no bias
X = np.array([[1.0, 2.0, -1.0], [0.5, -0.5, 2.0], [-1.0, 0.0, 1.5], [2.0, 1.0, 0.0]])
Y = np.array([0, 1, 1, 0])


def linear_net(weight=W):
    net = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor(weight))
    return net


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def linear_gradient_and_hessian():
    """Mean cross-entropy of z = W x: grad = (P - E)^T X / N (C x d) and the full
    Hessian sum_n kron(diag p_n - p_n p_n^T, x_n x_n^T) / N over vec(W) (row-major)."""
    P = softmax(X @ W.T)
    E = np.eye(2)[Y]
    grad = (P - E).T @ X / len(X)
    H = sum(np.kron(np.diag(p) - np.outer(p, p), np.outer(x, x)) for p, x in zip(P, X, strict=True))
    return grad, H / len(X)


def test_gradient_norm_snip_grasp_linear():
    grad, H = linear_gradient_and_hessian()
    w, g = W.ravel(), grad.ravel()
    net, Xt, yt = linear_net(), torch.tensor(X), torch.tensor(Y)
    assert gradient_norm(net, Xt, yt) == pytest.approx(np.linalg.norm(g), rel=1e-12)
    assert snip(net, Xt, yt) == pytest.approx(np.abs(w * g).sum(), rel=1e-12)
    assert grasp(net, Xt, yt) == pytest.approx(-w @ H @ g, rel=1e-10)


def test_synflow_two_layer_relu_by_hand():
    # |W| and an all-ones input make every ReLU the identity: R = 1^T |W2| |W1| 1, and each
    # of the two layers contributes R to sum w dR/dw (degree-1 homogeneity per layer)
    W1, W2 = np.array([[1.0, -2.0], [0.5, 0.0], [-0.3, 0.1]]), np.array([[-1.0, 3.0, 2.0]])
    net = torch.nn.Sequential(torch.nn.Linear(2, 3, bias=False), torch.nn.ReLU(),
                              torch.nn.Linear(3, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[2].weight.copy_(torch.tensor(W2))
    R = np.abs(W2) @ np.abs(W1) @ np.ones(2)
    assert synflow(net, torch.randn(5, 2)) == pytest.approx(2 * R.item(), rel=1e-12)
    # the caller's weights are untouched (signs kept)
    assert float(net[0].weight.detach()[0, 1]) == -2.0


def test_jacob_cov_linear_net_is_rank_one():
    # f(x) = W x: every sample's input Jacobian of sum_c f_c is W^T 1, so the correlation
    # matrix is all ones: eigenvalues N and N-1 zeros
    k, n = 1e-5, len(X)
    expected = -(np.log(n + k) + 1 / (n + k) + (n - 1) * (np.log(k) + 1 / k))
    assert jacob_cov(linear_net(), torch.tensor(X)) == pytest.approx(expected, rel=1e-9)


def test_jacob_cov_relu_net_by_hand():
    rng = np.random.default_rng(0)
    W1, W2, Xs = rng.normal(size=(6, 3)), rng.normal(size=(4, 6)), rng.normal(size=(5, 3))
    net = torch.nn.Sequential(torch.nn.Linear(3, 6, bias=False), torch.nn.ReLU(),
                              torch.nn.Linear(6, 4, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[2].weight.copy_(torch.tensor(W2))
    J = np.stack([W1.T @ ((W1 @ x > 0) * (W2.T @ np.ones(4))) for x in Xs])
    v = np.linalg.eigvalsh(np.corrcoef(J))
    expected = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    assert jacob_cov(net, torch.tensor(Xs)) == pytest.approx(expected, rel=1e-8)


def test_ntk_condition_number_linear_by_hand():
    # d sum_c (W x)_c / dW = 1 x^T, so Theta_nm = C x_n . x_m
    Xs = X[:3]
    eig = np.linalg.eigvalsh(2 * Xs @ Xs.T)
    assert ntk_condition_number(linear_net(), torch.tensor(Xs)) == pytest.approx(
        eig[-1] / eig[0], rel=1e-9)
    # more samples than parameters: singular NTK
    assert ntk_condition_number(torch.nn.Linear(1, 1, bias=False), torch.randn(3, 1)) == \
        float("inf")


def test_curvature_statistics_match_subspace_hessian():
    from goldisk._flat import ParamLayout
    from goldisk._rng import draw_seed
    from goldisk.models import MLP
    from goldisk.projections import make_projection

    net = MLP(3, (5,), 2)
    Xt, yt = torch.tensor(X), torch.tensor(Y)
    s = curvature_statistics(net, Xt, yt, dim=4, random_state=3)
    P = make_projection("dense", ParamLayout(net).D, 4, random_state=draw_seed(3))
    res = subspace_hessian(net, Xt, yt, P)
    ref = hessian_statistics(res.H)
    assert s["trace_ratio"] == pytest.approx(ref["trace_ratio"], rel=1e-12)
    assert s["frac_positive"] == ref["frac_positive"]
    g, h = np.trace(res.G.numpy()), np.trace(res.Hterm.numpy())
    assert s["g_dominance"] == pytest.approx(g / abs(h), rel=1e-10)
    assert s["g_trace_ratio"] == pytest.approx(g / np.linalg.norm(res.G.numpy()), rel=1e-10)

    assert s["loss"] == pytest.approx(float(res.loss), rel=1e-12)


def test_init_statistics_subset_order_and_errors():
    from goldisk.models import MLP

    net, Xt, yt = MLP(3, (5,), 2), torch.tensor(X), torch.tensor(Y)
    out = init_statistics(net, Xt, yt, ["snip", "grad_norm"], n_batch=3, random_state=0)
    assert list(out) == ["snip", "grad_norm"]
    assert out["snip"] == pytest.approx(snip(net, Xt, yt), rel=1e-12)
    with pytest.raises(ValueError, match="statistics must be a subset"):
        init_statistics(net, Xt, yt, ["nope"])
    with pytest.raises(ValueError, match="n_batch"):
        init_statistics(net, Xt, yt, ["snip"], n_batch=1)
    assert set(INIT_STATISTICS.values()) == {1, -1}


def test_init_statistics_as_selector_criteria():
    from goldisk import CurvatureProbe, GoldilocksClassifier, GoldilocksSelector
    from goldisk.estimators._init_criteria import INIT_CRITERIA
    from goldisk.estimators._probe import SCORES
    from goldisk.models import MLP

    # every init statistic is a criterion name: computed here or a probe column
    assert set(INIT_STATISTICS) <= set(INIT_CRITERIA) | set(SCORES)
    assert {"grad_norm", "snip", "grasp", "synflow", "jacob_cov", "ntk_cond"} <= \
        set(INIT_CRITERIA)
    rng = np.random.default_rng(0)
    Xs, ys = rng.normal(size=(50, 4)).astype(np.float32), rng.integers(0, 3, 50)
    net = GoldilocksClassifier(MLP, module__hidden=(6,), max_epochs=0)
    sel = GoldilocksSelector(net, n_candidates=3, criterion="ntk_cond", refit=False,
                             probe=CurvatureProbe(dim=3), random_state=0).fit(Xs, ys)
    # each candidate's score is minus its NTK condition number (smaller claimed better)
    for row in sel.candidates_.itertuples():
        cand = net.set_params(random_state=int(row.seed)).fit(Xs, ys)
        module = cand.module_
        ref = init_statistics(module, Xs, ys, ["ntk_cond"], n_batch=50, random_state=0)
        assert row.score == pytest.approx(-ref["ntk_cond"], rel=1e-9)
    assert sel.best_index_ == int(np.argmax(sel.candidates_["score"].to_numpy()))
