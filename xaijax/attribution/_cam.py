"""Grad-CAM and CAM on a named layer of an unedited Flax model."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from xaijax import _filters, errors
from xaijax._explainer import Explainer, check_batch, options
from xaijax._model import Model, RunFn, as_model
from xaijax.attribution import _common as c
from xaijax.typing import Array


def _output_spatial(x: Array) -> tuple[int, ...]:
    """Spatial shape of an input: all axes but batch and channels (token ids: all but batch)."""
    return tuple(x.shape[1:]) if jnp.issubdtype(x.dtype, jnp.integer) else tuple(x.shape[1:-1])


def layer_gradient(m: Model, run: RunFn, params, x, target):
    """``(activation, d score_t / d activation)`` for a layer opened by ``run``."""
    _, act_shape = jax.eval_shape(lambda p, xx: run(p, xx, None), params, x)

    def f(delta):
        outputs, act = run(params, x, delta)
        scores = m.read_scores(outputs)
        t = c.resolve(scores, target)
        return jnp.sum(c.select(scores, t)), act

    grads, act = jax.grad(f, has_aux=True)(jnp.zeros(act_shape.shape, act_shape.dtype))
    return act, grads


def _class_map(model, layer, *, spatial_reduce: str, relu: bool, upsample: bool, name: str):
    m = as_model(model, what=name)
    access = m.open_layer(layer)
    checked_shapes: set = set()

    def core(params, x, target):
        act, grads = layer_gradient(m, access.run, params, x, target)
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

    def check(params, x, target, kwargs):
        key = (jax.tree_util.tree_structure(params), x.shape, str(x.dtype))
        if key not in checked_shapes:
            _, act = jax.eval_shape(lambda p, xx: access.run(p, xx, None), params, x)
            if len(act.shape) < 3 or act.shape[0] != x.shape[0]:
                raise errors.InvalidArgumentError(
                    f"Layer {layer!r} outputs shape {list(act.shape)}, which has no spatial "
                    f"axes ([B, *spatial, K] needed): {name} weights a feature map. Pick a "
                    "convolutional layer (`model.layer_names(params, x)` lists them)."
                )
            checked_shapes.add(key)
        return x, target, kwargs

    return Explainer(
        name=name,
        model=m,
        run=jax.jit(core),
        result="spatial_map",
        options=options(layer=layer, relu=relu, upsample=upsample),
        integer_inputs=True,
        check=check,
    )


def grad_cam(model: Any, layer: str, *, relu: bool = True, upsample: bool = True) -> Explainer:
    """Grad-CAM: layer activations weighted by their spatially averaged gradients.

    .. math:: L^c = \\mathrm{ReLU}\\big(\\sum_k \\alpha_k^c A^k\\big),\\quad
              \\alpha_k^c = \\frac{1}{Z} \\sum_{ij} \\partial y^c / \\partial A^k_{ij}

    Args:
      model: a :class:`~xaijax.Model` with named layers (from :func:`xaijax.from_linen` or
        :func:`xaijax.from_nnx`), or a ``flax.linen.Module`` (``from_linen`` is applied).
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


def cam(model: Any, layer: str, *, relu: bool = False, upsample: bool = True) -> Explainer:
    """CAM: the class activation map ``M_c = sum_k w_kc A_k`` of a GAP + dense head.

    The weights are read off the model as ``w_kc = sum_ij d y_c / d A^k_ij``, which for a
    ``Dense(GAP(A))`` head is exactly the dense kernel, so no head name is needed and the logit
    decomposes exactly: ``y_c = mean_ij M_c(i, j) + b_c`` (before ``relu`` and ``upsample``). On
    other heads this is Grad-CAM with summed instead of averaged gradients.

    Args:
      model: a :class:`~xaijax.Model` with named layers, or a ``flax.linen.Module``.
      layer: the layer feeding the global average pool.
      relu: clip negative evidence (off by default, so the decomposition is exact).
      upsample: resize to the input's spatial shape.

    Returns:
      ``explain(params, x, target=None) -> [B, *spatial]``.

    References:
      Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016.
    """
    return _class_map(model, layer, spatial_reduce="sum", relu=relu, upsample=upsample, name="cam")


def layer_names(model: Any, params, x) -> list[str]:
    """The names of the layers of ``model`` (a Linen module or a Model with layers) that
    :func:`grad_cam` can open."""
    m = as_model(model, what="layer_names")
    if m.layer_names is None:
        raise errors.InvalidArgumentError(
            "This model gives no access to named layers: build it with `xaijax.from_linen` or "
            "`xaijax.from_nnx`."
        )
    return m.layer_names(params, check_batch(x, integer=True))
