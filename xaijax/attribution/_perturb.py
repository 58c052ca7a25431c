"""Perturbation attributions: occlusion (sliding windows) and RISE (random masks)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _validation as v
from xaijax import errors
from xaijax._explainer import Explainer, options
from xaijax._model import as_model
from xaijax.attribution import _common as c
from xaijax.typing import Array


def _is_positive_int(a) -> bool:
    return not isinstance(a, bool) and isinstance(a, int | np.integer) and a > 0


def _check_sizes(value, name: str) -> int | tuple[int, ...]:
    """A window size or stride, checked in the factory: a positive int or a non-empty sequence
    of positive ints (its length is checked against the input's spatial rank at call time)."""
    if _is_positive_int(value):
        return int(value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0:
        if all(_is_positive_int(a) for a in value):
            return tuple(int(a) for a in value)
    raise errors.InvalidArgumentError(
        f"`{name}` must be a positive int (the same on every spatial axis) or a tuple of "
        f"positive ints (one per spatial axis), got {value!r}: e.g. `{name}=8` or `{name}=(8, 8)`."
    )


def _pair(value, n: int, name: str) -> tuple[int, ...]:
    vals = (value,) * n if isinstance(value, int) else tuple(value)
    if len(vals) != n:
        raise errors.InvalidArgumentError(
            f"`{name}`={value!r} gives {len(vals)} sizes but the input has {n} spatial axes: "
            f"pass one int (the same on every axis) or a tuple of {n} positive ints."
        )
    return vals


def occlusion(
    model: Any,
    *,
    window: int | Sequence[int] = 8,
    stride: int | Sequence[int] | None = None,
    fill: float = 0.0,
    chunk_size: int | None = 16,
) -> Explainer:
    """Occlusion: the drop of the target score when a sliding window is filled with ``fill``.

    Every window position ``j`` occludes all channels of a ``window`` patch; each input location
    gets the mean of ``f_t(x) - f_t(x_j)`` over the windows that cover it, as in Captum's
    ``Occlusion``: along an axis of size ``s`` windows start at ``0, stride, 2 stride, ...``,
    ``ceil((s - window) / stride) + 1`` of them, and the last one is clipped at the border when
    the stride does not tile the axis, so every location is covered. Windows are evaluated
    ``chunk_size`` at a time.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn``; ``x`` is
        ``[B, *spatial, C]`` (images ``[B, H, W, C]``, video ``[B, T, H, W, C]``).
      window: window size per spatial axis (an int means the same on every axis).
      stride: window step per spatial axis; ``None`` means ``window // 2`` (at least 1).
      fill: the finite value written into occluded positions.
      chunk_size: windows per model call (memory bound); ``None`` means all at once.

    Returns:
      ``explain(params, x, target=None) -> [B, *spatial, C]`` shaped like ``x`` (the value is the
      same across channels).

    Raises:
      InvalidArgumentError: a ``window``, ``stride``, ``fill`` or ``chunk_size`` out of range
        (when the explainer is built); at call time, a ``window`` or ``stride`` tuple whose
        length is not the input's spatial rank, or a window larger than the input.

    Example:
      >>> import jax.numpy as jnp, xaijax
      >>> f = lambda p, x: jnp.stack([x[:, :4, :4].sum((1, 2, 3)), jnp.zeros(x.shape[0])], 1)
      >>> a = xaijax.occlusion(f, window=4, stride=4)(None, jnp.ones((1, 8, 8, 1)), jnp.array([0]))
      >>> float(a[0, :4, :4].min()), float(a[0, 4:, 4:].max())
      (16.0, 0.0)

    References:
      Zeiler, Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    """
    net = as_model(model, what="occlusion")
    window = _check_sizes(window, "window")
    if stride is not None:
        stride = _check_sizes(stride, "stride")
    fill = v.check_number(fill, "fill")
    if chunk_size is not None:
        v.check_positive_int(chunk_size, "chunk_size")
    cache: dict = {}

    def build(spatial: tuple[int, ...]):
        n = len(spatial)
        win = _pair(window, n, "window")
        std = _pair(
            stride if stride is not None else tuple(max(1, w // 2) for w in win), n, "stride"
        )
        if any(w > s for w, s in zip(win, spatial, strict=True)):
            raise errors.InvalidArgumentError(
                f"`window`={win} is larger than the input's spatial shape {spatial}: use a "
                "smaller window."
            )
        # Captum's count: the last window may start less than a window from the border and is
        # clipped there (the mask below stops at the border by itself).
        counts = [-(-(s - w) // st) + 1 for s, w, st in zip(spatial, win, std, strict=True)]
        total = int(np.prod(counts))
        chunk = total if chunk_size is None else min(chunk_size, total)
        num_chunks = math.ceil(total / chunk)
        grids = [jnp.arange(s) for s in spatial]

        def window_masks(idx):  # idx [k] -> [k, *spatial] float masks
            starts = jnp.stack(jnp.unravel_index(idx, counts), axis=-1) * jnp.asarray(std)[None]
            mask = jnp.ones((idx.shape[0],) + spatial, jnp.float32)
            for ax in range(n):
                lo = starts[:, ax].reshape((-1,) + (1,) * n)
                coord = grids[ax].reshape(tuple(s if a == ax else 1 for a, s in enumerate(spatial)))
                inside = (coord[None] >= lo) & (coord[None] < lo + win[ax])
                mask = mask * inside.astype(jnp.float32)
            return mask

        def chunk_fn(i, params, x, target, base):
            idx = i * chunk + jnp.arange(chunk)
            valid = (idx < total).astype(x.dtype)
            masks = window_masks(jnp.minimum(idx, total - 1)) * valid.reshape((-1,) + (1,) * n)
            m = masks[None, ..., None]  # [1, k, *spatial, 1]
            occluded = x[:, None] * (1 - m) + fill * m  # [B, k, *spatial, C]
            # Examples stay the outer axis of the flattened batch, so a batch sharded over
            # devices stays sharded (no all-gather; see experiments/bench/attribution.py).
            flat = occluded.reshape((x.shape[0] * chunk,) + x.shape[1:])
            scores = c.select(net.scores(params, flat), jnp.repeat(target, chunk))
            drop = (base[:, None] - scores.reshape(-1, chunk)) * valid[None]  # [B, k]
            return jnp.einsum("bk,k...->b...", drop, masks), jnp.sum(masks, axis=0)

        @jax.jit
        def prepare(params, x, target):
            scores = net.scores(params, x)
            t = c.resolve(scores, target)
            return t, c.select(scores, t)

        @jax.jit
        def finish(x, summed, count):
            count = jnp.broadcast_to(count[None], summed.shape)
            out = jnp.where(count > 0, summed / jnp.maximum(count, 1.0), 0.0)
            return jnp.broadcast_to(out[..., None], x.shape).astype(x.dtype)

        return chunk_fn, jax.jit(chunk_fn), num_chunks, prepare, finish

    def program(x):
        spatial = tuple(x.shape[1:-1])
        if spatial not in cache:
            cache[spatial] = build(spatial)
        return cache[spatial]

    def check(params, x, target, kwargs):
        if x.ndim < 3:
            raise errors.InputShapeError(
                f"`x` must be [B, *spatial, C] for occlusion, got shape {list(x.shape)}."
            )
        program(x)  # window and stride checked against the input's size
        return x, target, kwargs

    def run(params, x, target=None) -> Array:
        chunk_fn, jitted, num_chunks, prepare, finish = program(x)
        t, base = prepare(params, x, target)
        summed, count = c.chunked_sum(
            chunk_fn, num_chunks, (params, x, t, base), jitted_chunk=jitted
        )
        return finish(x, summed, count)

    return Explainer(
        name="occlusion",
        model=net,
        run=run,
        result="map",
        options=options(window=window, stride=stride, fill=fill, chunk_size=chunk_size),
        min_rank=3,
        check=check,
    )


def rise(
    model: Any,
    *,
    num_samples: int = 2000,
    cell_size: int = 8,
    p: float = 0.5,
    chunk_size: int | None = 64,
) -> Explainer:
    """RISE: saliency as the average of random masks weighted by the masked input's score.

    Each mask is a random binary grid with cells of ``cell_size`` pixels, kept with probability
    ``p``, upsampled bilinearly one cell larger than the image and cropped at a random shift
    (Petsiuk et al.). The map is ``sum_i s_t(x * M_i) M_i / (N p)`` with ``s`` the model's
    explained score: the logits by default, like every xaijax explainer; the paper weights by
    the softmax probability, which is ``xaijax.model(apply_fn, score="probability")``.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn``; ``x`` is
        ``[B, H, W, C]``.
      num_samples: number of random masks ``N``.
      cell_size: grid cell size in pixels.
      p: probability that a cell is kept, in (0, 1].
      chunk_size: masks per model call (memory bound); ``None`` means all at once.

    Returns:
      ``explain(params, x, target=None, *, key) -> [B, H, W]`` (a reduced shape: no channels).
      The same masks are used for every example of the batch.

    References:
      Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
      Models", BMVC 2018.
    """
    net = as_model(model, what="rise")
    total = v.check_positive_int(num_samples, "num_samples")
    cell = v.check_positive_int(cell_size, "cell_size")
    p = v.check_fraction(p, "p")
    chunk = (
        total if chunk_size is None else min(v.check_positive_int(chunk_size, "chunk_size"), total)
    )
    num_chunks = math.ceil(total / chunk)

    def make_masks(key, idx, h, w):
        gh, gw = math.ceil(h / cell), math.ceil(w / cell)
        up_h, up_w = (gh + 1) * cell, (gw + 1) * cell

        def one(j):
            k1, k2 = jax.random.split(jax.random.fold_in(key, j))
            grid = jax.random.bernoulli(k1, p, (gh + 1, gw + 1)).astype(jnp.float32)
            up = jax.image.resize(grid, (up_h, up_w), "linear")
            dy, dx = jax.random.randint(k2, (2,), 0, cell)
            return jax.lax.dynamic_slice(up, (dy, dx), (h, w))

        return jax.vmap(one)(idx)

    def chunk_fn(i, params, x, target, key):
        b, h, w = x.shape[:3]
        idx = i * chunk + jnp.arange(chunk)
        valid = (idx < total).astype(x.dtype)
        m = make_masks(key, idx, h, w)  # [k, H, W]
        masked = x[:, None] * m[None, :, :, :, None]  # [B, k, H, W, C], examples outermost
        flat = masked.reshape((b * chunk,) + x.shape[1:])
        scores = net.scores(params, flat)
        score = c.select(scores, jnp.repeat(target, chunk)).reshape(b, chunk) * valid[None]
        return jnp.einsum("bk,khw->bhw", score, m)

    jitted = jax.jit(chunk_fn)
    predict = jax.jit(lambda params, x: c.resolve(net.scores(params, x), None))

    def check(params, x, target, kwargs):
        if x.ndim != 4:
            raise errors.InputShapeError(
                f"`x` must be images [B, H, W, C] for RISE, got shape {list(x.shape)}."
            )
        return x, target, kwargs

    def run(params, x, target=None, *, key) -> Array:
        if target is None:
            target = predict(params, x)
        summed = c.chunked_sum(chunk_fn, num_chunks, (params, x, target, key), jitted_chunk=jitted)
        return summed / (total * p)

    return Explainer(
        name="rise",
        model=net,
        run=run,
        result="spatial_map",
        options=options(num_samples=total, cell_size=cell, p=p, chunk_size=chunk_size),
        stochastic=True,
        min_rank=4,
        check=check,
    )
