"""Fixed random linear maps ``P: R^d -> R^D`` from a low-dimensional subspace to parameters.

Every projection is a :class:`torch.nn.Module` whose random state lives in buffers, whose
columns have unit norm, and whose ``forward`` (``P @ theta``) and ``transpose`` (``P^T @ v``)
work under ``torch.func`` transforms (``vmap``, ``jvp``, ``grad``, ``jacfwd(jacrev(...))``).

Examples
--------
>>> import torch
>>> from goldisk.projections import make_projection
>>> P = make_projection("fastfood", 1000, 4, random_state=0)
>>> P(torch.zeros(4, dtype=torch.float64)).shape
torch.Size([1000])
"""

from ._base import Projection, as_torch_generator
from ._common import to_csr
from ._dense import DenseProjection
from ._factory import KINDS, make_projection, orthogonality_error
from ._fastfood import FastfoodProjection
from ._identity import IdentityProjection
from ._matrix import MatrixProjection, as_projection
from ._sparse import SparseProjection

__all__ = [
    "KINDS",
    "DenseProjection",
    "FastfoodProjection",
    "IdentityProjection",
    "MatrixProjection",
    "Projection",
    "SparseProjection",
    "as_projection",
    "as_torch_generator",
    "make_projection",
    "orthogonality_error",
    "to_csr",
]
