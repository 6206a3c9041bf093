"""Loss-geometry metrics: distances, interpolation, sharpness, surfaces, Hessian, gradient noise.

Every function takes any nn.Module whose forward maps X to logits and a `loss_fn(logits, y)`
(default: mean cross-entropy), evaluates in eval mode over the whole of X (chunked), and leaves
the module's weights, buffers, modes, requires_grad flags and .grad as it found them.
"""
from .adaptive import adaptive_sharpness
from .distances import distance_from_init, group_by_layer, layer_distances
from .hessian import hessian_power_iteration, hessian_top_eigenvalues, hessian_trace
from .interpolation import interpolation_curves, linear_interpolation
from .noise import gradient_noise_scale, gradient_standard_error
from .sharpness import keskar_first_order, keskar_sharpness
from .surface import filter_normalized_direction, loss_slice_1d, loss_surface_2d
from .updates import mean_batch_update_norm, per_example_grads

__all__ = [
    "adaptive_sharpness",
    "distance_from_init",
    "filter_normalized_direction",
    "gradient_noise_scale",
    "gradient_standard_error",
    "group_by_layer",
    "hessian_power_iteration",
    "hessian_top_eigenvalues",
    "hessian_trace",
    "interpolation_curves",
    "keskar_first_order",
    "keskar_sharpness",
    "layer_distances",
    "linear_interpolation",
    "loss_slice_1d",
    "loss_surface_2d",
    "mean_batch_update_norm",
    "per_example_grads",
]
