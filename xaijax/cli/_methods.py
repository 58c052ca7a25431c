"""The explanation methods the demo runs, each reduced to one ``[B, H, W]`` map per image.

Each entry builds an explainer from the model and returns ``run(params, x, target) -> [B, H, W]``.
New method families register here as they land, so the demo grows with the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

import xaijax
from xaijax import fixations, segmentation, superpixels, surrogates

#: Methods whose maps the demo figure shows above each image's minimum. RISE's map is the mean
#: class probability over the masks that keep a pixel: for a confident model it is about the same
#: everywhere (an offset close to 1 with a structure of a few tenths), which a colour scale from 0
#: paints as one flat colour. The RISE authors' figures show their maps on a min-max colour scale;
#: the figure does the same, and says so. The table scores the raw maps.
SHOWN_ABOVE_MINIMUM = ("rise",)


class Method(NamedTuple):
    name: str
    run: Callable[..., jax.Array]  # run(params, x, target) -> [B, H, W]
    note: str


def _pixel_map(attr: jax.Array) -> jax.Array:
    """Per-pixel importance of a channels-last attribution: the sum of |a| over channels."""
    return jnp.sum(jnp.abs(attr), axis=-1)


def image_methods(model, apply_fn, *, small: bool) -> list[Method]:
    """The attribution family on an image model with a GAP + dense head."""
    key = jax.random.key(0)
    steps, samples, masks = (4, 2, 50) if small else (32, 16, 1000)
    window, stride = (16, 16) if small else (8, 4)
    layer = model.cam_layer
    grad = xaijax.gradient(apply_fn)
    gxi = xaijax.gradient_x_input(apply_fn)
    ig = xaijax.integrated_gradients(apply_fn, steps=steps, chunk_size=1)
    sg = xaijax.smooth(grad, num_samples=samples, chunk_size=1)
    gbp = xaijax.guided_backprop(apply_fn)
    occ = xaijax.occlusion(apply_fn, window=window, stride=stride, chunk_size=8)
    # RISE weights masks by the class probability, as in the paper.
    probability = xaijax.model(apply_fn, score="probability")
    rise = xaijax.rise(probability, num_samples=masks, cell_size=8, chunk_size=50)
    return (
        [
            Method(
                "gradient", lambda p, x, t: _pixel_map(grad(p, x, t)), "|dlogit/dx| summed over RGB"
            ),
            Method("gradient_x_input", lambda p, x, t: _pixel_map(gxi(p, x, t)), "|x * dlogit/dx|"),
            Method(
                "integrated_gradients",
                lambda p, x, t: _pixel_map(ig(p, x, t)),
                f"{steps} Gauss-Legendre steps, zero baseline",
            ),
            Method(
                "smoothgrad",
                lambda p, x, t: _pixel_map(sg(p, x, t, key=key)),
                f"{samples} samples, 15% noise",
            ),
            Method(
                "guided_backprop", lambda p, x, t: _pixel_map(gbp(p, x, t)), "guided ReLU backward"
            ),
            Method("grad_cam", xaijax.grad_cam(model, layer), f"layer {layer!r}"),
            Method(
                "cam", xaijax.cam(model, layer, relu=True), f"layer {layer!r}, GAP + dense head"
            ),
            Method(
                "occlusion",
                lambda p, x, t: occ(p, x, t)[..., 0],
                f"{window}x{window} window, stride {stride}, zero fill",
            ),
            Method("rise", lambda p, x, t: rise(p, x, t, key=key), f"{masks} masks, 8 px cells"),
        ]
        + superpixel_methods(apply_fn, small=small)
        + [
            Method(
                "cnn_fixations", _fixation_map(apply_fn), "backtracked forward pass, no gradient"
            ),
        ]
    )


def _paint(segments: jax.Array, scores: jax.Array) -> jax.Array:
    """Per-pixel map from per-segment scores: ``map[b, ...] = scores[b, segments[b, ...]]``."""
    flat = segments.reshape(segments.shape[0], -1)
    return jnp.take_along_axis(scores, flat, axis=1).reshape(segments.shape)


def superpixel_methods(apply_fn, *, small: bool) -> list[Method]:
    """GWS (gradient pooled over SLIC superpixels) and LIME on the same superpixels."""
    segment = jax.jit(segmentation.slic(approx_segments=30, compactness=10.0, num_segments=48))
    num_samples = 100 if small else 1000
    # gradient x input summed per superpixel: of the five pixel scorers of the GWS paper, the one
    # that agrees best with LIME on this benchmark (experiments/results/gws_vs_lime.md); the
    # signed mean gradient is anti-correlated with LIME there.
    gws = superpixels.gws(
        xaijax.gradient_x_input(apply_fn), "sum", channel_reduce="sum", num_segments=48
    )
    # LIME explains the class probability, as the lime package does.
    probability = xaijax.model(apply_fn, score="probability")
    lime = surrogates.lime(probability, num_samples=num_samples, num_segments=48, chunk_size=8)
    key = jax.random.key(1)

    def run_gws(p, x, t):
        seg = segment(x)
        return _paint(seg, jax.nn.relu(gws(p, x, t, segments=seg)))

    def run_lime(p, x, t):
        seg = segment(x)
        return _paint(seg, jax.nn.relu(lime(p, x, t, segments=seg, key=key).coefficients))

    return [
        Method("gws", run_gws, "gradient x input summed per SLIC superpixel (~30 segments)"),
        Method("lime", run_lime, f"{num_samples} samples on the same superpixels"),
    ]


def _fixation_map(apply_fn):
    fix = fixations.fixations(apply_fn)

    def run(p, x, t):
        return fixations.heatmap(fix(p, x, t))

    return run
