"""random_state is resolved once per initialize into a SeedBundle that flows down unchanged."""

import dataclasses

import numpy as np
import pytest
import torch

import goldisk._rng as rng_mod
from goldisk import GoldilocksClassifier, InitScaler, SubspaceProjector
from goldisk._rng import MAX_SEED, SeedBundle
from goldisk.models import MLP


def _data(n=40):
    rng = np.random.default_rng(1)
    return rng.normal(size=(n, 4)).astype(np.float32), np.arange(n) % 2


def _net(max_epochs=1):
    return GoldilocksClassifier(MLP, module__hidden=(5,), max_epochs=max_epochs,
                                random_state=7, init_scaler=InitScaler(radius=1.5),
                                subspace=SubspaceProjector(dim=3))


def test_seeds_are_the_documented_draws():
    """Independent reference: four draws in [0, MAX_SEED) from default_rng(seed), in the
    order module, init, subspace, train (the dict init_seeds_ was)."""
    net = _net().fit(*_data())
    rng = np.random.default_rng(7)
    expected = {k: int(rng.integers(0, MAX_SEED)) for k in ("module", "init", "subspace",
                                                             "train")}
    assert isinstance(net.init_seeds_, SeedBundle)
    assert net.init_seeds_ == expected and dict(net.init_seeds_) == expected
    assert net.init_seeds_["train"] == net.init_seeds_.train == expected["train"]
    with pytest.raises(KeyError):
        net.init_seeds_["nope"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.init_seeds_.init = 0


def test_random_state_is_resolved_once_per_fit(monkeypatch):
    calls = []
    draw = SeedBundle.draw.__func__

    def counted(cls, random_state):
        calls.append(random_state)
        return draw(cls, random_state)

    monkeypatch.setattr(rng_mod.SeedBundle, "draw", classmethod(counted))
    _net().fit(*_data())
    assert calls == [7]


def test_a_dict_of_seeds_builds_the_same_module():
    """init_seeds_ set as a plain dict (as it was) still drives initialize_module."""
    X, y = _data()
    net = _net(max_epochs=0).fit(X, y)
    before = {k: v.clone() for k, v in net.module_.state_dict().items()  # w0, P, theta
              if torch.is_tensor(v)}
    net.init_seeds_ = dict(net.init_seeds_)
    net.initialize_module()
    after = net.module_.state_dict()
    assert len(before) > 1
    assert all(torch.equal(before[k], after[k]) for k in before)
