"""Grad-CAM and CAM on a named layer of an unedited Flax model."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from xaijax import _filters
from xaijax import _validation as v
from xaijax.attribution import _common as c
from xaijax.attribution import _layers
from xaijax.typing import Array


def _output_spatial(x: Array) -> tuple[int, ...]:
    """Spatial shape of an input: all axes but batch and channels (token ids: all but batch)."""
    return tuple(x.shape[1:]) if jnp.issubdtype(x.dtype, jnp.integer) else tuple(x.shape[1:-1])


def _class_map(model, layer, *, spatial_reduce: str, relu: bool, upsample: bool, name: str):
    access = _layers.layer_access(model, layer)
    spec = c.ModelSpec(access.apply_fn)

    def core(params, x, target):
        act, grads, _ = _layers.layer_gradient(access.run, params, x, target)
        axes = tuple(range(1, act.ndim - 1))
        reduce = jnp.mean if spatial_reduce == "mean" else jnp.sum
        weights = reduce(grads, axis=axes)  # [B, K]
        maps = jnp.einsum("b...k,bk->b...", act, weights)
        if relu:
            maps = jax.nn.relu(maps)
        if upsample and maps.ndim >= 2:
            out = _output_spatial(x)
            if len(out) == maps.ndim - 1:
                maps = _filters.resize_spatial(maps, out)
        return maps

    core = jax.jit(core)

    def explain(params, x, target=None) -> Array:
        x, target = c.check_inputs(spec, params, x, target, allow_integer=True)
        return core(params, x, target)

    return c.attach(explain, apply_fn=access.apply_fn, layer=access.layer, name=name)


def grad_cam(
    model, layer: str, *, relu: bool = True, upsample: bool = True
) -> Callable[..., Array]:
    """Grad-CAM: layer activations weighted by their spatially averaged gradients.

    .. math:: L^c = \\mathrm{ReLU}\\big(\\sum_k \\alpha_k^c A^k\\big),\\quad
              \\alpha_k^c = \\frac{1}{Z} \\sum_{ij} \\partial y^c / \\partial A^k_{ij}

    Args:
      model: a ``flax.linen.Module`` (called as ``model.apply({"params": params}, x)``), or a
        :class:`~xaijax.attribution.LayerAccess` (e.g. from :func:`nnx_layer` for NNX models).
      layer: the name of the layer to explain (``"/"``-separated path). An unknown name raises
        :class:`~xaijax.errors.UnknownLayerError` listing the layers that exist.
      relu: apply the ReLU of the paper (Captum's ``LayerGradCam`` default is ``False``).
      upsample: resize the map (bilinear, half-pixel centres) to the input's spatial shape.

    Returns:
      ``explain(params, x, target=None) -> [B, *spatial]`` (a reduced shape: no channel axis;
      ``[B, H, W]`` for images, ``[B, T, H, W]`` for video, ``[B, L]`` for token sequences).

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn, xaijax
      >>> class Net(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, x):
      ...         x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
      ...         return nn.Dense(2, name="head")(x.mean(axis=(1, 2)))
      >>> net = Net(); x = jnp.ones((1, 8, 8, 3))
      >>> params = net.init(jax.random.key(0), x)["params"]
      >>> xaijax.grad_cam(net, "conv")(params, x).shape
      (1, 8, 8)

    References:
      Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
      Localization", ICCV 2017.
    """
    return _class_map(
        model, layer, spatial_reduce="mean", relu=relu, upsample=upsample, name="grad_cam"
    )


def cam(model, layer: str, *, relu: bool = False, upsample: bool = True) -> Callable[..., Array]:
    """CAM: the class activation map ``M_c = sum_k w_kc A_k`` of a GAP + dense head.

    The weights are read off the model as ``w_kc = sum_ij d y_c / d A^k_ij``, which for a
    ``Dense(GAP(A))`` head is exactly the dense kernel, so no head name is needed and the logit
    decomposes exactly: ``y_c = mean_ij M_c(i, j) + b_c`` (before ``relu`` and ``upsample``). On
    other heads this is Grad-CAM with summed instead of averaged gradients.

    Args:
      model: a ``flax.linen.Module`` or a :class:`~xaijax.attribution.LayerAccess`.
      layer: the layer feeding the global average pool.
      relu: clip negative evidence (off by default, so the decomposition is exact).
      upsample: resize to the input's spatial shape.

    Returns:
      ``explain(params, x, target=None) -> [B, *spatial]``.

    References:
      Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016.
    """
    return _class_map(model, layer, spatial_reduce="sum", relu=relu, upsample=upsample, name="cam")


def layer_names(model, params, x) -> list[str]:
    """The names of the layers of a Linen ``model`` that :func:`grad_cam` can open."""
    v.check_floating(x, "x", min_rank=2) if not jnp.issubdtype(
        jnp.asarray(x).dtype, jnp.integer
    ) else None
    return _layers._linen_names(model, params, x)
