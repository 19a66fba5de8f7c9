"""Explicit randomness: every random draw in goldisk goes through a generator made here."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Mapping

import numpy as np
import torch

from ._validation import is_int

__all__ = ["check_random_state", "torch_generator", "draw_seed", "fork_global_rng", "MAX_SEED",
           "MAX_TABLE_SEED", "SeedBundle"]

#: Seeds are drawn from ``[0, MAX_SEED)``: 62 bits fit every generator goldisk seeds (numpy's
#: and torch's take up to 64 bits) and stay positive in a signed 64-bit column of a table.
MAX_SEED = 2**62
#: Seeds reported in a table (``GoldilocksSelector.candidates_["seed"]``) stay below this:
#: a row read as a Series (``iterrows``, ``.loc[i]``) is float64, exact only below 2**53.
MAX_TABLE_SEED = 2**31 - 1


def check_random_state(random_state) -> np.random.Generator:
    """Turn ``random_state`` into a :class:`numpy.random.Generator`.

    Parameters
    ----------
    random_state : None, int, numpy.random.Generator, numpy.random.RandomState or torch.Generator
        ``None`` gives fresh OS entropy; an int seeds deterministically; a Generator is
        returned as is; a ``RandomState`` or ``torch.Generator`` is consumed to draw a seed.

    Examples
    --------
    >>> int(check_random_state(0).integers(10)) == int(check_random_state(0).integers(10))
    True
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if is_int(random_state):
        if random_state < 0:
            raise ValueError(
                f"random_state must be a non-negative int, got {random_state}; pass e.g. 0."
            )
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        # (below 2**31: a RandomState draws C longs, 32 bits on Windows)
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, torch.Generator):
        seed = int(torch.randint(0, MAX_SEED, (1,), generator=random_state).item())
        return np.random.default_rng(seed)
    raise TypeError(
        "random_state must be None, an int, a numpy Generator/RandomState or a torch.Generator; "
        f"got {type(random_state).__name__}."
    )


def draw_seed(random_state) -> int:
    """Draw one 63-bit integer seed from ``random_state`` (see :func:`check_random_state`)."""
    return int(check_random_state(random_state).integers(0, MAX_SEED))


@dataclasses.dataclass(frozen=True, eq=False)
class SeedBundle(Mapping):
    """The named seeds a net draws once from its ``random_state`` (at ``initialize``) and
    hands down unchanged: ``module`` (building the module), ``init`` (the init scaler's
    redraw), ``subspace`` (the projection ``P``), ``train`` (batches, dropout, ``lr="auto"``).

    Read by name (``seeds.init``) or as the mapping it always was (``seeds["init"]``,
    ``dict(seeds)``, equal to a dict with the same items).

    Examples
    --------
    >>> a, b = SeedBundle.draw(0), SeedBundle.draw(0)
    >>> a == b, list(a), a.init == a["init"]
    (True, ['module', 'init', 'subspace', 'train'], True)
    """

    module: int
    init: int
    subspace: int
    train: int

    @classmethod
    def draw(cls, random_state) -> SeedBundle:
        """One seed per field, in field order, each in ``[0, MAX_SEED)``, from one generator
        (:func:`check_random_state`)."""
        rng = check_random_state(random_state)
        return cls(*(int(rng.integers(0, MAX_SEED)) for _ in dataclasses.fields(cls)))

    def __getitem__(self, key):
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return (f.name for f in dataclasses.fields(self))

    def __len__(self) -> int:
        return len(dataclasses.fields(self))

    def __hash__(self) -> int:
        return hash(tuple(self.items()))


def torch_generator(random_state, device="cpu") -> torch.Generator:
    """A seeded :class:`torch.Generator` from ``random_state``; never the global RNG.

    An int seeds the generator directly, so ``torch_generator(3)`` is reproducible.

    Examples
    --------
    >>> a = torch.randn(2, generator=torch_generator(3))
    >>> b = torch.randn(2, generator=torch_generator(3))
    >>> bool((a == b).all())
    True
    """
    if isinstance(random_state, torch.Generator):
        return random_state
    gen = torch.Generator(device=device)
    if is_int(random_state):
        check_random_state(random_state)  # validates sign
        if int(random_state) >= 2**64:
            raise ValueError(f"random_state must be an int below 2**64, got {random_state}.")
        gen.manual_seed(int(random_state))
    else:
        gen.manual_seed(draw_seed(random_state))
    return gen


#: Serializes the blocks that seed torch's global RNG: threads share it, so two nets
#: training at once in threads (joblib's threading backend) would draw each other's numbers.
#: A net holds it for its whole training loop: a callback that itself fits goldisk nets in
#: other threads during a fit would wait forever (use processes there).
_GLOBAL_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def fork_global_rng(seed: int, device="cpu"):
    """Run a block with torch's global RNG (CPU, and CUDA ``device``) seeded by ``seed``,
    restoring the caller's RNG state afterwards. One thread at a time (the RNG is global)."""
    dev = torch.device("cpu" if device is None else device)
    cuda = []
    if dev.type == "cuda":  # "cuda" without an index is the current device
        cuda = [torch.cuda.current_device() if dev.index is None else dev.index]
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(int(seed))
        for i in cuda:
            torch.cuda.default_generators[i].manual_seed(int(seed))
        yield
