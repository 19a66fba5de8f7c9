"""The Spearman test of the decompose summaries: exact p-values for small n."""

import itertools

import numpy as np
import pytest
from scipy import stats

from goldisk.experiments._decompose import EXACT_SPEARMAN_N, spearman


@pytest.mark.parametrize("n, seed, ties", [(4, 0, False), (6, 1, True), (7, 2, False)])
def test_exact_p_equals_brute_force_over_all_pairings(n, seed, ties):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, n).astype(float) if ties else rng.normal(size=n)
    y = x + rng.normal(size=n)
    rho, p = spearman(x, y)
    ref = stats.spearmanr(x, y).statistic
    null = np.array([stats.spearmanr(x, np.array(q)).statistic
                     for q in itertools.permutations(y)])
    assert rho == pytest.approx(ref, abs=1e-12)
    assert p == pytest.approx(np.mean(np.abs(null) >= abs(ref) - 1e-9), abs=1e-12)


def test_small_n_perfect_rank_agreement_is_not_1e_minus_24():
    # n = 5, rho = 1: the t approximation says ~1e-24, the exact value is 2 / 5!
    x = [1, 2, 3, 4, 5]
    assert stats.spearmanr(x, x).pvalue < 1e-10
    assert spearman(x, x)[1] == pytest.approx(2 / 120)
    big = np.arange(EXACT_SPEARMAN_N + 2, dtype=float)
    assert spearman(big, big[::-1])[1] == pytest.approx(stats.spearmanr(big, big[::-1]).pvalue)
