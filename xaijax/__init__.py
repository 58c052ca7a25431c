"""xaijax: explanations of image, video and text classifiers as pure, jittable JAX transforms."""

from xaijax import errors, metrics
from xaijax.attribution import (
    cam,
    convergence_delta,
    from_nnx,
    grad_cam,
    gradient,
    gradient_x_input,
    guided_backprop,
    integrated_gradients,
    nnx_layer,
    occlusion,
    rise,
    smooth,
)

__version__ = "0.1.0"

__all__ = [
    "cam",
    "convergence_delta",
    "errors",
    "metrics",
    "from_nnx",
    "grad_cam",
    "gradient",
    "gradient_x_input",
    "guided_backprop",
    "integrated_gradients",
    "nnx_layer",
    "occlusion",
    "rise",
    "smooth",
]
