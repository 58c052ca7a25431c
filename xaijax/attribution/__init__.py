"""Attribution transforms: gradients, path integrals, noise tunnels, CAMs, perturbations.

Every factory takes a model (an :class:`xaijax.Model`, a Linen module or a bare ``apply_fn``),
closes over its hyperparameters and returns an :class:`xaijax.Explainer`,
``explain(params, x, target=None, ...)``, that works eagerly, under ``jit`` and under ``vmap``.
"""

from xaijax.attribution._cam import cam, grad_cam, layer_names
from xaijax.attribution._common import input_gradient
from xaijax.attribution._gradient import gradient, gradient_x_input
from xaijax.attribution._guided import guided_backprop, guided_relu, replace_relu
from xaijax.attribution._integrated import convergence_delta, integrated_gradients, quadrature
from xaijax.attribution._layer import at_layer
from xaijax.attribution._perturb import occlusion, rise
from xaijax.attribution._smooth import smooth

__all__ = [
    "at_layer",
    "cam",
    "convergence_delta",
    "grad_cam",
    "gradient",
    "gradient_x_input",
    "guided_backprop",
    "guided_relu",
    "input_gradient",
    "integrated_gradients",
    "layer_names",
    "occlusion",
    "quadrature",
    "replace_relu",
    "rise",
    "smooth",
]
