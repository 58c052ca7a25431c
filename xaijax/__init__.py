"""xaijax: explanations of image, video and text classifiers as pure, jittable JAX transforms.

Importing xaijax changes nothing in JAX's configuration and loads only what explainers need; the
families that need more (``data``, ``models``, ``training``, ``viz``, ...) load with their
subpackage on first use (``xaijax.data`` or ``from xaijax import data``).
"""

import importlib as _importlib

from xaijax import errors
from xaijax._devices import shard_batch, use_cpu_devices
from xaijax._explainer import RESULTS, Explainer, checked, explainer
from xaijax._model import Model, from_linen, from_nnx, model
from xaijax.attribution import (
    at_layer,
    cam,
    convergence_delta,
    grad_cam,
    gradient,
    gradient_x_input,
    guided_backprop,
    integrated_gradients,
    layer_names,
    occlusion,
    rise,
    smooth,
)

__version__ = "0.2.0"

#: Subpackages loaded on first access (PEP 562), so `import xaijax` stays light.
_SUBPACKAGES = (
    "anchornet",
    "attribution",
    "cli",
    "data",
    "eat",
    "fixations",
    "masks",
    "metrics",
    "models",
    "pipeline",
    "segmentation",
    "summaries",
    "superpixels",
    "surrogates",
    "training",
    "viz",
)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"xaijax.{name}")
    raise AttributeError(f"module 'xaijax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBPACKAGES))


__all__ = [
    "RESULTS",
    "Explainer",
    "Model",
    "at_layer",
    "cam",
    "checked",
    "convergence_delta",
    "errors",
    "explainer",
    "from_linen",
    "from_nnx",
    "grad_cam",
    "gradient",
    "gradient_x_input",
    "guided_backprop",
    "integrated_gradients",
    "layer_names",
    "model",
    "occlusion",
    "rise",
    "shard_batch",
    "smooth",
    "use_cpu_devices",
]
