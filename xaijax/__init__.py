"""xaijax: explanations of image, video and text classifiers as pure, jittable JAX transforms."""

from xaijax import _devices

_devices.configure_cpu_devices()  # two CPU devices per core, before JAX starts a backend

from xaijax import errors, metrics  # noqa: E402
from xaijax._devices import set_cpu_data_parallel  # noqa: E402
from xaijax.attribution import (  # noqa: E402
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
    "set_cpu_data_parallel",
    "smooth",
]
