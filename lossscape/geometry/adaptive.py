"""Adaptive sharpness (claim X-3): Keskar's box scaled by |w| alone, so that rescaling a ReLU
network's layers (Dinh et al. 2017) cannot change the answer.

Dinh et al. (2017) show that x -> (a W_1, W_2 / a) leaves a ReLU network's function unchanged
while making Keskar's box {|z_i| <= eps (|x_i| + 1)} as sharp or as flat as one likes. ASAM (Kwon
et al. 2021) normalizes the perturbation by T_x = diag(|x|); with the max-norm that is the box
C = {z : |z_i| <= eps |x_i|}, which such a rescaling maps onto itself: the maximum of the loss over
it is a property of the function, not of the parametrization.
"""
from __future__ import annotations

from torch import Tensor, nn

from ._functional import LossFn
from .sharpness import keskar_sharpness


def adaptive_sharpness(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    epsilon: float = 1e-2,
    subspace_dim: int | None = None,
    maxiter: int = 10,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    batch_size: int | None = None,
) -> float:
    """phi = (max_{z in C} f(x + z) - f(x)) / (1 + f(x)) * 100 with C = {z : |z_i| <= epsilon |x_i|}.

    Keskar's search (L-BFGS-B, `maxiter` iterations, the largest loss seen) on the adaptive box;
    the arguments mean what they mean in `keskar_sharpness`. The default epsilon is 10x Keskar's
    1e-3 because this box lacks the + 1: for weights of magnitude ~0.1 it then has about the size
    of Keskar's box at 1e-3. Only the full-space box is rescaling-invariant: a random subspace
    (subspace_dim) mixes coordinates, and its box scales with |A^+ x| instead.
    """
    return keskar_sharpness(model, X, y, epsilon, subspace_dim, maxiter, seed, loss_fn, batch_size, box="adaptive")
