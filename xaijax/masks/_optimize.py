"""Mask optimisation: the smooth and crisp masks of Visual Summaries and meaningful perturbation.

One engine serves the three factories. For each image (a kernel written for one example and
lifted by ``jax.vmap``, so every image has its own optimiser state) a mask ``m`` in ``[0, 1]``
(1 keep, 0 delete) is optimised by an optax optimiser for a fixed number of iterations. Under a
caller's ``jit`` the whole call (target resolution, null image, optimisation, statistics) is
one program with the iterations in a ``lax.scan``; an eager call runs them from the host in
jitted chunks of up to :data:`CHUNK` unrolled iterations for all images at once, because XLA
on CPU runs a model inside a ``while`` loop several times slower than outside one (measured:
50 steps of the zoo VGG on 4 images, 4.1 s in the scan against 1.3 s in chunks). Both give the
same masks (tested). Each iteration:

* ``M = blur(upsample(m))`` (bilinear upsampling by ``mask_scale``, then a Gaussian blur of
  the upsampled mask; both skipped for a full-resolution mask);
* ``x' = x * M + null * (1 - M)`` with ``null`` the Gaussian-blurred image;
* loss ``= p_c(x') + l1 * L1(m) + tv * TV_beta(m) + lasso * LASSO(m)`` with ``p_c`` the softmax
  probability of the explained class;
* one optimiser step, then ``m`` clipped to ``[0, 1]``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xaijax import _validation as v
from xaijax import errors
from xaijax._explainer import Explainer, as_explainer, options
from xaijax._filters import gaussian_blur, resize_spatial
from xaijax._model import as_model
from xaijax.masks._regularizers import l1_loss, lasso_loss, tv_loss
from xaijax.superpixels._segments import check_num_segments, check_segments
from xaijax.typing import Array

#: The loss coefficients of the smooth mask (A1) in the Visual Summaries code, before and after
#: its commit 0a4a85d of 2018-05-18 (papers.md 4(f).2).
#: Iterations per jitted chunk when a call runs eagerly (the largest divisor of ``iterations``
#: up to this): each chunk is unrolled, so this bounds the compile time.
CHUNK = 10

PRESETS = {
    "bmvc": {"l1": 0.5, "tv": 0.01},
    "arxiv_v1": {"l1": 0.01, "tv": 1e-4},
}
INITS = ("circular", "ones")


class MaskExplanation(NamedTuple):
    """What the mask explainers return for a batch ``x: [B, H, W, C]``.

    Attributes:
      map: ``[B, H, W]`` the saliency map: the code's saved heat mask
        ``h = 1 - (M - min M) / max M`` (bright = deleted = salient; 1 where ``max M = 0``).
        As in the code, a mask that deletes nothing (``M = 1`` everywhere) gives ``h = 1``
        everywhere: read ``mask`` (or ``drop``) to tell "nothing salient" from "all salient".
      mask: ``[B, H, W]`` the full-resolution mask ``M`` the image was perturbed with (1 keep,
        0 replaced by the null image).
      target_prob: ``[B]`` softmax probability of the explained class on ``x``.
      mask_prob: ``[B]`` the same on ``x * M + null * (1 - M)``.
      blurred_prob: ``[B]`` the same on the null image.
      drop: ``[B]`` ``(target_prob - mask_prob) / target_prob`` (0 where ``target_prob = 0``).
      score: ``[B]`` the normalised score ``p = (mask_prob - target_prob) / (target_prob -
        blurred_prob)`` (0 where the denominator is 0).
    """

    map: Array
    mask: Array
    target_prob: Array
    mask_prob: Array
    blurred_prob: Array
    drop: Array
    score: Array


def circular_init(shape: tuple[int, int]) -> Array:
    """The code's circular initialisation, exactly as its ``load_mask(..., 'circular')``: on
    integer offsets from cell ``(h // 2, w // 2)``, zeros where ``dy^2 + dx^2 <= r^2`` with
    ``r = min(h, w) // 2`` (the centre starts deleted), ones outside. The disk is off-centre by
    half a cell, as in the code.

    Args:
      shape: ``(h, w)``, the mask grid (positive ints).

    Returns:
      ``[h, w]`` float32 mask (0 inside the disk, 1 outside).

    Raises:
      InvalidArgumentError: ``shape`` not two positive ints.

    Example:
      >>> circular_init((4, 4)).astype(int).tolist()
      [[1, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    """
    if not isinstance(shape, tuple | list) or len(shape) != 2:
        raise errors.InvalidArgumentError(
            f"`shape` must be the mask grid (h, w), two positive ints, got {shape!r}."
        )
    h = v.check_positive_int(shape[0], "shape[0] (h)")
    w = v.check_positive_int(shape[1], "shape[1] (w)")
    r = min(h, w) // 2
    dy, dx = np.ogrid[-(h // 2) : h - h // 2, -(w // 2) : w - w // 2]
    return jnp.asarray(np.where(dy * dy + dx * dx > r * r, 1.0, 0.0), jnp.float32)


def straight_through_blur(up: Array, blur) -> Array:
    """``blur(up)`` in the forward pass, the identity in the backward pass:
    ``up + stop_gradient(blur(up) - up)`` (the code blurs ``x.data`` on the host, so no
    gradient flows through its blur)."""
    return up + jax.lax.stop_gradient(blur(up) - up)


def _heat(mask: Array) -> Array:
    """``h = 1 - (M - min M) / max M`` of one ``[H, W]`` mask (the code's saved heat mask)."""
    hi = jnp.max(mask)
    scaled = (mask - jnp.min(mask)) / jnp.where(hi > 0, hi, 1.0)
    return jnp.where(hi > 0, 1.0 - scaled, 1.0)


def _safe_div(num: Array, den: Array) -> Array:
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _engine(
    net,
    name: str,
    *,
    iterations: int,
    optimizer: optax.GradientTransformation,
    l1: float,
    tv: float,
    tv_beta: float,
    lasso: float,
    reduce: str,
    mask_scale: int,
    mask_blur_sigma: float | None,
    straight_through: bool,
    null_blur_sigma: float,
    null_kernel_size: int | None,
    null_border: str,
    null_truncate: float | None,
    init: str,
    jitter: int,
    opts: tuple,
    init_from=None,
    num_segments: int | None = None,
) -> Explainer:
    """The shared explainer: see the module docstring. ``init_from(params, x, target) -> [B, H,
    W]`` gives initial full-resolution masks when no ``init_mask`` is passed (the crisp mask).
    With ``num_segments`` the variables are one value per superpixel (``m: [S]``), ``M =
    m[segments]`` and the call takes ``segments`` ``[B, H, W]``; ``l1`` and ``lasso`` then
    average over the image's non-empty segments and ``tv`` applies to ``M`` (the code's A3)."""
    prob_model = net.with_score("probability")
    sp = num_segments is not None

    def mask_of(m, hw, seg):
        if sp:
            return m[seg]
        if mask_scale == 1 and mask_blur_sigma is None:
            return m
        up = resize_spatial(m[None], hw, "bilinear")[0] if mask_scale > 1 else m
        if mask_blur_sigma is None:
            return up

        def blur(a):
            return gaussian_blur(a[None, :, :, None], mask_blur_sigma, truncate=4.0)[0, :, :, 0]

        return straight_through_blur(up, blur) if straight_through else blur(up)

    def perturbed(x, null, big_m):
        return x * big_m[..., None] + null * (1.0 - big_m[..., None])

    def prob(params, x, t):
        return prob_model.scores(params, x[None])[0, t]

    def regularizer(m, big_m, seg):
        if not sp:
            reg = l1 * l1_loss(m, reduce=reduce) + tv * tv_loss(m, tv_beta, reduce=reduce)
            return reg + lasso * lasso_loss(m, reduce=reduce) if lasso else reg
        # one variable per superpixel: means over the image's non-empty segments
        present = jnp.zeros(m.shape, m.dtype).at[seg].set(1.0)
        mean = lambda a: jnp.sum(present * a) / jnp.sum(present)  # noqa: E731
        reg = l1 * mean(jnp.abs(1.0 - m)) + tv * tv_loss(big_m, tv_beta, reduce=reduce)
        return reg + lasso * mean(jnp.abs((1.0 - m) * m)) if lasso else reg

    def loss_fn(params, m, x, null, t, off, seg):
        """The loss of one image's mask ``m`` at jitter offset ``off``."""
        pad = ((0, jitter), (0, jitter), (0, 0))
        xp, nullp = jnp.pad(x, pad, mode="edge"), jnp.pad(null, pad, mode="edge")
        xs = jax.lax.dynamic_slice(xp, (off[0], off[1], 0), x.shape)
        ns = jax.lax.dynamic_slice(nullp, (off[0], off[1], 0), x.shape)
        big_m = mask_of(m, x.shape[:2], seg)
        return prob(params, perturbed(xs, ns, big_m), t) + regularizer(m, big_m, seg)

    def step(params, x, null, t, seg, carry, off):
        """One optimiser step of one image's mask, then the clip to ``[0, 1]``."""
        m, state = carry
        g = jax.grad(loss_fn, argnums=1)(params, m, x, null, t, off, seg)
        updates, state = optimizer.update(g, state, m)
        return jnp.clip(optax.apply_updates(m, updates), 0.0, 1.0), state

    def scanned(params, x, null, t, seg, m0, offsets):
        """One image ``x: [H, W, C]``: every iteration in one ``lax.scan``."""

        def body(carry, off):
            return step(params, x, null, t, seg, carry, off), None

        (m, _), _ = jax.lax.scan(body, (m0, optimizer.init(m0)), offsets)
        return m

    def unrolled(params, x, null, t, seg, m, state, offsets):
        """One image: ``len(offsets)`` iterations unrolled (no loop in the program)."""
        carry = (m, state)
        for i in range(offsets.shape[0]):
            carry = step(params, x, null, t, seg, carry, offsets[i])
        return carry

    def stats(params, x, null, t, seg, m):
        big_m = mask_of(m, x.shape[:2], seg)
        p_t, p_m = prob(params, x, t), prob(params, perturbed(x, null, big_m), t)
        p_b = prob(params, null, t)
        return MaskExplanation(
            map=_heat(big_m),
            mask=big_m,
            target_prob=p_t,
            mask_prob=p_m,
            blurred_prob=p_b,
            drop=_safe_div(p_t - p_m, p_t),
            score=_safe_div(p_m - p_t, p_t - p_b),
        )

    def segment_means(full, seg):
        """One image's ``[H, W]`` mask averaged over each segment (1 for empty segments)."""
        total = jax.ops.segment_sum(full.reshape(-1), seg.reshape(-1), num_segments)
        count = jax.ops.segment_sum(jnp.ones(seg.size, full.dtype), seg.reshape(-1), num_segments)
        return jnp.where(count > 0, total / jnp.maximum(count, 1.0), 1.0)

    def start(params, x, target, init_mask, key, segments):
        """The explained class, the null image, the initial masks and the jitter offsets."""
        b, h, w = x.shape[:3]
        if target is None:
            target = jnp.argmax(net.scores(params, x), axis=-1).astype(jnp.int32)
        null = gaussian_blur(
            x, null_blur_sigma, size=null_kernel_size, border=null_border, truncate=null_truncate
        )
        if init_mask is None and init_from is not None:
            init_mask = init_from(params, x, target)
        if init_mask is None:
            grid = (h // mask_scale, w // mask_scale)
            m0 = circular_init(grid) if init == "circular" else jnp.ones(grid, jnp.float32)
            m0 = jnp.broadcast_to(m0, (b, *grid))
        else:
            m0 = jnp.clip(init_mask.astype(jnp.float32), 0.0, 1.0)
        if sp:
            m0 = jax.vmap(segment_means)(m0, segments)
        if jitter:
            draw = lambda i: jax.random.randint(jax.random.fold_in(key, i), (2,), 0, jitter)  # noqa: E731
            offsets = jax.vmap(draw)(jnp.arange(iterations))
        else:
            offsets = jnp.zeros((iterations, 2), jnp.int32)
        return target, null, m0, offsets

    def finish(params, x, null, target, segments, m):
        return jax.vmap(stats, in_axes=(None, 0, 0, 0, 0, 0))(params, x, null, target, segments, m)

    @jax.jit
    def program(params, x, target, init_mask, key, segments):
        """The whole call as one program (iterations in a ``lax.scan``): under a caller's jit."""
        target, null, m0, offsets = start(params, x, target, init_mask, key, segments)
        m = jax.vmap(scanned, in_axes=(None, 0, 0, 0, 0, 0, None))(
            params, x, null, target, segments, m0, offsets
        )
        return finish(params, x, null, target, segments, m)

    chunk = max(d for d in range(1, min(iterations, CHUNK) + 1) if iterations % d == 0)

    @jax.jit
    def begin(params, x, target, init_mask, key, segments):
        target, null, m0, offsets = start(params, x, target, init_mask, key, segments)
        state = jax.vmap(optimizer.init)(m0)
        return target, null, m0, state, offsets.reshape(iterations // chunk, chunk, 2)

    @jax.jit
    def advance(params, x, null, target, segments, m, state, offsets):
        run_one = jax.vmap(unrolled, in_axes=(None, 0, 0, 0, 0, 0, 0, None))
        return run_one(params, x, null, target, segments, m, state, offsets)

    def run(params, x, target, init_mask, key, segments=None):
        """Eager calls run the iterations in jitted chunks of ``chunk`` unrolled steps from the
        host: XLA on CPU runs the model inside a ``while`` loop about 10x slower than the same
        steps outside one (measured: 50 VGG steps of 4 images, 6.2 s in a ``lax.scan`` against
        0.5 s as 50 calls). Under a caller's ``jit`` the whole call is one program."""
        if segments is None:  # a per-image placeholder the kernels ignore
            segments = jnp.zeros((x.shape[0],), jnp.int32)
        leaves = jax.tree_util.tree_leaves((params, x, target, init_mask, key, segments))
        if any(isinstance(a, jax.core.Tracer) for a in leaves):
            return program(params, x, target, init_mask, key, segments)
        if init_mask is None and init_from is not None:
            if target is None:
                target = jnp.argmax(net.scores(params, x), axis=-1).astype(jnp.int32)
            init_mask = init_from(params, x, target)  # the smooth mask's own chunked run
        target, null, m, state, offsets = begin(params, x, target, init_mask, key, segments)
        for c in range(offsets.shape[0]):
            m, state = advance(params, x, null, target, segments, m, state, offsets[c])
        return _finish(params, x, null, target, segments, m)

    _finish = jax.jit(finish)

    def check(params, x, target, kwargs):
        if x.ndim != 4:
            raise errors.InputShapeError(
                f"`x` must be images [B, H, W, C] for {name}, got shape {list(x.shape)}. "
                "Add a channel axis to grey images (`x[..., None]`)."
            )
        h, w = x.shape[1:3]
        if h % mask_scale or w % mask_scale:
            raise errors.InputShapeError(
                f"`mask_scale`={mask_scale} must divide the image size {h} x {w} (the mask is "
                f"{h}/{mask_scale} x {w}/{mask_scale} cells): resize the images or pick a "
                f"divisor of both, e.g. mask_scale={math.gcd(h, w)}."
            )
        init_mask = kwargs.get("init_mask")
        if init_mask is not None:
            init_mask = v.as_array(init_mask, "init_mask")
            want = (x.shape[0], h // mask_scale, w // mask_scale)
            if tuple(init_mask.shape) != want:
                raise errors.InputShapeError(
                    f"`init_mask` must be [B, H/mask_scale, W/mask_scale] = {list(want)} masks "
                    f"(1 keep, 0 delete), got shape {list(init_mask.shape)}."
                )
            if not jnp.issubdtype(init_mask.dtype, jnp.floating):
                raise errors.InputDTypeError(
                    f"`init_mask` must be floating point in [0, 1], got {init_mask.dtype}: "
                    "use `init_mask.astype(jnp.float32)`."
                )
            v.check_finite(init_mask, "init_mask")
            kwargs = {**kwargs, "init_mask": init_mask}
        if sp:
            if kwargs.get("segments") is None:
                raise errors.InvalidArgumentError(
                    f"{name} needs the superpixels of each call: `explain(params, x, segments="
                    f"...)`, integer labels in [0, {num_segments}) shaped [B, H, W] or [H, W], "
                    f"e.g. `xaijax.segmentation.slic(2000, num_segments={num_segments})(x)`."
                )
            segs = check_segments(kwargs["segments"], x, num_segments, min_segments=1)
            kwargs = {**kwargs, "segments": segs}
        return x, target, kwargs

    if sp:

        def fn_segments(params, x, target=None, *, segments, init_mask=None) -> MaskExplanation:
            return run(params, x, target, init_mask, None, segments)

        fn = fn_segments
    elif jitter:

        def run_stochastic(params, x, target=None, *, key, init_mask=None) -> MaskExplanation:
            return run(params, x, target, init_mask, key)

        fn = run_stochastic
    else:

        def fn(params, x, target=None, *, init_mask=None) -> MaskExplanation:
            return run(params, x, target, init_mask, None)

    return Explainer(
        name=name,
        model=net,
        run=fn,
        result="mask",
        options=opts,
        stochastic=bool(jitter),
        min_rank=4,
        check=check,
    )


def _optimizer(optimizer, learning_rate):
    if optimizer is None:
        return optax.adam(v.check_positive_number(learning_rate, "learning_rate"))
    if not isinstance(optimizer, optax.GradientTransformation):
        raise errors.InvalidArgumentError(
            f"`optimizer` must be an optax.GradientTransformation (e.g. optax.adam(0.1)), got "
            f"{type(optimizer).__name__}."
        )
    return optimizer


def _coefficients(l1, tv, tv_beta, lasso=0.0):
    return (
        v.check_positive_number(l1, "l1", allow_zero=True),
        v.check_positive_number(tv, "tv", allow_zero=True),
        v.check_positive_number(tv_beta, "tv_beta"),
        v.check_positive_number(lasso, "lasso", allow_zero=True),
    )


def _initialiser(net, smooth, what: str) -> Explainer:
    """The smooth-mask explainer whose heat map initialises the crisp and superpixel masks."""
    first = smooth_mask(net) if smooth is None else as_explainer(smooth, what)
    if first.result != "mask" or first.stochastic:
        raise errors.InvalidArgumentError(
            f"`smooth` must be a deterministic mask explainer (xaijax.masks.smooth_mask(...)), "
            f"got {first.name!r}."
        )
    return first


def _refined(
    model,
    name: str,
    smooth,
    *,
    num_segments: int | None,
    iterations,
    learning_rate,
    l1,
    tv,
    tv_beta,
    lasso,
    null_blur_sigma,
    null_kernel_size,
    optimizer,
) -> Explainer:
    """The masks refined from the smooth one (A2 crisp, A3 superpixel): full resolution, no
    blur, initialised with ``1 - h_smooth``; per superpixel when ``num_segments`` is given."""
    net = as_model(model, what=name)
    l1, tv, tv_beta, lasso = _coefficients(l1, tv, tv_beta, lasso)
    iterations = v.check_positive_int(iterations, "iterations")
    null_blur_sigma = v.check_positive_number(null_blur_sigma, "null_blur_sigma")
    null_kernel_size = v.check_positive_int(null_kernel_size, "null_kernel_size")
    opt = _optimizer(optimizer, learning_rate)
    first = _initialiser(net, smooth, name)
    bound = dict(first.bound)  # keywords bound with functools.partial / bind: the smooth's own

    def init_from(params, x, target):
        kwargs = dict(bound)
        if first.check is not None:  # its own checks (e.g. a bound `init_mask`'s shape)
            _, _, kwargs = first.check(params, x, target, kwargs)
        return 1.0 - first.run(params, x, target, **kwargs).map

    opts = options(
        **({} if num_segments is None else {"num_segments": num_segments}),
        iterations=iterations,
        learning_rate=learning_rate if optimizer is None else None,
        l1=l1,
        tv=tv,
        tv_beta=tv_beta,
        lasso=lasso,
        null_blur_sigma=null_blur_sigma,
        null_kernel_size=null_kernel_size,
        smooth=repr(first),
        optimizer=None if optimizer is None else type(optimizer).__name__,
    )
    return _engine(
        net,
        name,
        iterations=iterations,
        optimizer=opt,
        l1=l1,
        tv=tv,
        tv_beta=tv_beta,
        lasso=lasso,
        reduce="mean",
        mask_scale=1,
        mask_blur_sigma=None,
        straight_through=False,
        null_blur_sigma=null_blur_sigma,
        null_kernel_size=null_kernel_size,
        null_border="reflect101",
        null_truncate=None,
        init="ones",
        jitter=0,
        opts=opts,
        init_from=init_from,
        num_segments=num_segments,
    )


def smooth_mask(
    model: Any,
    *,
    preset: str = "bmvc",
    iterations: int = 300,
    learning_rate: float = 0.1,
    l1: float | None = None,
    tv: float | None = None,
    tv_beta: float = 3.0,
    mask_scale: int = 8,
    mask_blur_sigma: float = 5.0,
    null_blur_sigma: float = 10.0,
    null_kernel_size: int = 11,
    init: str = "circular",
    optimizer: optax.GradientTransformation | None = None,
) -> Explainer:
    """The smooth mask of Visual Summaries (A1): a low-resolution deletion mask, batched.

    A mask ``m`` of ``H/mask_scale x W/mask_scale`` cells in ``[0, 1]`` (1 keep) starts from
    the circular initialisation (zeros inside the inscribed disk) and minimises, for
    ``iterations`` Adam steps (clipped to ``[0, 1]`` after each),

        ``p_c(x * M + null * (1 - M)) + l1 * mean|1 - m| + tv * TV_beta(m)``

    with ``M`` the bilinear upsampling of ``m`` blurred by a Gaussian of ``mask_blur_sigma``
    (scipy's ``gaussian_filter``: ``truncate=4``, reflect border) with the code's straight-through
    gradient (the blur is applied in the forward pass only, as the code overwrites ``x.data``), and
    ``null`` the image blurred as ``cv2.GaussianBlur(x, (11, 11), 10)`` (11 taps, OpenCV's
    reflect-101 border). ``p_c`` is the softmax probability of the explained class (``target``,
    or the arg-max class) of the model's head, whatever the model's ``score``.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn``; ``x`` is
        ``[B, H, W, C]`` with ``H`` and ``W`` multiples of ``mask_scale``.
      preset: ``"bmvc"`` (``l1=0.5, tv=0.01``, the code after 2018-05-18) or ``"arxiv_v1"``
        (``l1=0.01, tv=1e-4``, before); explicit ``l1`` / ``tv`` override it.
      iterations: optimiser steps (300 in the code).
      learning_rate: Adam's learning rate (0.1); unused when ``optimizer`` is given.
      l1: weight of ``mean|1 - m|``.
      tv: weight of ``TV_beta(m)`` (means of the two difference images).
      tv_beta: the TV exponent (3).
      mask_scale: input pixels per mask cell along each side (8: 28 x 28 for 224 x 224).
      mask_blur_sigma: sigma of the blur of the upsampled mask (5).
      null_blur_sigma: sigma of the null image's blur (10).
      null_kernel_size: taps of the null image's blur (11).
      init: ``"circular"`` (the code) or ``"ones"`` (nothing deleted).
      optimizer: an optax optimiser replacing ``optax.adam(learning_rate)``.

    Returns:
      ``explain(params, x, target=None, *, init_mask=None) ->`` :class:`MaskExplanation` (result
      ``"mask"``); ``init_mask`` ``[B, H/mask_scale, W/mask_scale]`` replaces the initialisation.

    Example:
      >>> import jax.numpy as jnp, xaijax
      >>> f = lambda p, x: jnp.stack([x[:, 4:12, 4:12].sum((1, 2, 3)), jnp.zeros(len(x))], 1)
      >>> x = jnp.zeros((1, 16, 16, 1)).at[:, 6:10, 6:10].set(1.0)
      >>> out = xaijax.masks.smooth_mask(f, iterations=20, mask_scale=4)(None, x)
      >>> out.map.shape, out.mask.shape, out.drop.shape
      ((1, 16, 16), (1, 16, 16), (1,))

    References:
      Godi, Carletti, Aghaei, Giuliari, Cristani, "Understanding Deep Architectures by Visual
      Summaries", BMVC 2018 (code: mcarletti/interpretable-visual-summaries).
    """
    net = as_model(model, what="smooth_mask")
    preset = v.check_choice(preset, "preset", tuple(PRESETS))
    l1 = PRESETS[preset]["l1"] if l1 is None else l1
    tv = PRESETS[preset]["tv"] if tv is None else tv
    l1, tv, tv_beta, _ = _coefficients(l1, tv, tv_beta)
    iterations = v.check_positive_int(iterations, "iterations")
    mask_scale = v.check_positive_int(mask_scale, "mask_scale")
    mask_blur_sigma = v.check_positive_number(mask_blur_sigma, "mask_blur_sigma")
    null_blur_sigma = v.check_positive_number(null_blur_sigma, "null_blur_sigma")
    null_kernel_size = v.check_positive_int(null_kernel_size, "null_kernel_size")
    init = v.check_choice(init, "init", INITS)
    opt = _optimizer(optimizer, learning_rate)
    opts = options(
        preset=preset,
        iterations=iterations,
        learning_rate=learning_rate if optimizer is None else None,
        l1=l1,
        tv=tv,
        tv_beta=tv_beta,
        mask_scale=mask_scale,
        mask_blur_sigma=mask_blur_sigma,
        null_blur_sigma=null_blur_sigma,
        null_kernel_size=null_kernel_size,
        init=init,
        optimizer=None if optimizer is None else type(optimizer).__name__,
    )
    return _engine(
        net,
        "smooth_mask",
        iterations=iterations,
        optimizer=opt,
        l1=l1,
        tv=tv,
        tv_beta=tv_beta,
        lasso=0.0,
        reduce="mean",
        mask_scale=mask_scale,
        mask_blur_sigma=mask_blur_sigma,
        straight_through=True,
        null_blur_sigma=null_blur_sigma,
        null_kernel_size=null_kernel_size,
        null_border="reflect101",
        null_truncate=None,
        init=init,
        jitter=0,
        opts=opts,
    )


def crisp_mask(
    model: Any,
    *,
    iterations: int = 150,
    learning_rate: float = 0.1,
    l1: float = 0.01,
    tv: float = 1.0,
    tv_beta: float = 3.0,
    lasso: float = 2.0,
    null_blur_sigma: float = 10.0,
    null_kernel_size: int = 11,
    smooth: Explainer | None = None,
    optimizer: optax.GradientTransformation | None = None,
) -> Explainer:
    """The crisp ("sharp") mask of Visual Summaries (A2): full resolution, pushed to binary.

    A full-resolution mask ``m`` (``M = m``: no upsampling, no blur) starts from the smooth
    mask, ``m = 1 - h_smooth`` (the code's saved heat mask inverted), and minimises

        ``p_c(x * m + null * (1 - m)) + l1 * L1(m) + tv * TV_beta(m) + lasso * mean|(1 - m) m|``

    for ``iterations`` Adam steps, clipped to ``[0, 1]`` after each. The smooth mask runs first
    inside the same jitted program (``smooth``, default ``smooth_mask(model)``) unless the call
    passes ``init_mask``.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn``; ``x`` is
        ``[B, H, W, C]``.
      iterations: optimiser steps (150 in the code).
      learning_rate: Adam's learning rate (0.1); unused when ``optimizer`` is given.
      l1: weight of ``mean|1 - m|`` (0.01).
      tv: weight of ``TV_beta(m)`` (1.0).
      tv_beta: the TV exponent (3).
      lasso: weight of ``mean|(1 - m) m|`` (2.0).
      null_blur_sigma: sigma of the null image's blur (10).
      null_kernel_size: taps of the null image's blur (11).
      smooth: the smooth-mask explainer giving the initialisation (built from the same model;
        default ``smooth_mask(model)``).
      optimizer: an optax optimiser replacing ``optax.adam(learning_rate)``.

    Returns:
      ``explain(params, x, target=None, *, init_mask=None) ->`` :class:`MaskExplanation` (result
      ``"mask"``); ``init_mask`` ``[B, H, W]`` (1 keep) replaces the smooth mask.

    Example:
      >>> import jax.numpy as jnp, xaijax
      >>> f = lambda p, x: jnp.stack([x[:, 4:12, 4:12].sum((1, 2, 3)), jnp.zeros(len(x))], 1)
      >>> x = jnp.zeros((1, 16, 16, 1)).at[:, 6:10, 6:10].set(1.0)
      >>> sm = xaijax.masks.smooth_mask(f, iterations=10, mask_scale=4)
      >>> out = xaijax.masks.crisp_mask(f, iterations=10, smooth=sm)(None, x)
      >>> out.mask.shape
      (1, 16, 16)

    References:
      Godi et al., "Understanding Deep Architectures by Visual Summaries", BMVC 2018.
    """
    return _refined(
        model,
        "crisp_mask",
        smooth,
        num_segments=None,
        iterations=iterations,
        learning_rate=learning_rate,
        l1=l1,
        tv=tv,
        tv_beta=tv_beta,
        lasso=lasso,
        null_blur_sigma=null_blur_sigma,
        null_kernel_size=null_kernel_size,
        optimizer=optimizer,
    )


def superpixel_mask(
    model: Any,
    *,
    num_segments: int,
    iterations: int = 50,
    learning_rate: float = 0.1,
    l1: float = 0.2,
    tv: float = 1.0,
    tv_beta: float = 3.0,
    lasso: float = 4.0,
    null_blur_sigma: float = 10.0,
    null_kernel_size: int = 11,
    smooth: Explainer | None = None,
    optimizer: optax.GradientTransformation | None = None,
) -> Explainer:
    """The optional superpixel mask of Visual Summaries (A3): one variable per superpixel.

    The mask is one value ``m_s`` in ``[0, 1]`` per superpixel (``M = m[segments]`` at full
    resolution, no blur), initialised with the mean of ``1 - h_smooth`` over each superpixel
    (the smooth mask's heat map inverted), and minimises

        ``p_c(x * M + null * (1 - M)) + l1 * mean_s |1 - m_s| + tv * TV_beta(M)
        + lasso * mean_s |(1 - m_s) m_s|``

    for ``iterations`` Adam steps, clipped to ``[0, 1]`` after each; the means run over each
    image's non-empty superpixels. The code segments with scikit-image's
    ``slic(n_segments=2000, compactness=10, sigma=0.5)``; here the caller passes the segments
    (e.g. ``xaijax.segmentation.slic(2000, 10)(x)``, which has no ``sigma`` pre-smoothing), so
    any segmentation serves and a new map compiles nothing new. The code ships this stage
    disabled in its class runs (``--no_super_pixel``).

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn``; ``x`` is
        ``[B, H, W, C]``.
      num_segments: the static number of segment labels ``S`` (labels lie in ``[0, S)``).
      iterations: optimiser steps (50 in the code).
      learning_rate: Adam's learning rate (0.1); unused when ``optimizer`` is given.
      l1: weight of the mean of ``|1 - m_s|`` (0.2).
      tv: weight of ``TV_beta(M)`` on the full-resolution mask (1.0).
      tv_beta: the TV exponent (3).
      lasso: weight of the mean of ``|(1 - m_s) m_s|`` (4.0).
      null_blur_sigma: sigma of the null image's blur (10).
      null_kernel_size: taps of the null image's blur (11).
      smooth: the smooth-mask explainer giving the initialisation (default
        ``smooth_mask(model)``).
      optimizer: an optax optimiser replacing ``optax.adam(learning_rate)``.

    Returns:
      ``explain(params, x, target=None, *, segments, init_mask=None) ->``
      :class:`MaskExplanation` (result ``"mask"``; ``mask`` is ``M``, constant on each
      superpixel); ``segments`` is ``[B, H, W]`` (or ``[H, W]`` shared) integer labels;
      ``init_mask`` ``[B, H, W]`` (1 keep) replaces the smooth mask before the per-segment means.

    Raises:
      InvalidArgumentError: a bad hyperparameter, or a call without ``segments``.
      SegmentMapError: (when called) segments that do not fit ``x`` or labels ``>= S``.

    Example:
      >>> import jax.numpy as jnp, xaijax
      >>> f = lambda p, x: jnp.stack([x[:, 4:12, 4:12].sum((1, 2, 3)), jnp.zeros(len(x))], 1)
      >>> x = jnp.zeros((1, 16, 16, 1)).at[:, 6:10, 6:10].set(1.0)
      >>> seg = xaijax.segmentation.grid(4)(x)  # 16 square superpixels of 4 x 4 pixels
      >>> sm = xaijax.masks.smooth_mask(f, iterations=10, mask_scale=4)
      >>> out = xaijax.masks.superpixel_mask(f, num_segments=16, smooth=sm, iterations=10)(
      ...     None, x, segments=seg)
      >>> out.mask.shape
      (1, 16, 16)

    References:
      Godi et al., "Understanding Deep Architectures by Visual Summaries", BMVC 2018 (code:
      ``train.py``, ``--super_pixel``).
    """
    return _refined(
        model,
        "superpixel_mask",
        smooth,
        num_segments=check_num_segments(num_segments, "superpixel_mask"),
        iterations=iterations,
        learning_rate=learning_rate,
        l1=l1,
        tv=tv,
        tv_beta=tv_beta,
        lasso=lasso,
        null_blur_sigma=null_blur_sigma,
        null_kernel_size=null_kernel_size,
        optimizer=optimizer,
    )


def meaningful_perturbation(
    model: Any,
    *,
    iterations: int = 300,
    learning_rate: float = 0.1,
    l1: float = 1e-4,
    tv: float = 1e-2,
    tv_beta: float = 3.0,
    jitter: int = 4,
    mask_scale: int = 8,
    mask_blur_sigma: float = 5.0,
    null_blur_sigma: float = 10.0,
    init: str = "circular",
    optimizer: optax.GradientTransformation | None = None,
) -> Explainer:
    """Fong & Vedaldi's meaningful perturbation (the deletion game), batched.

    The same optimisation as :func:`smooth_mask` with Fong & Vedaldi's choices: the
    regularisers are SUMS over the mask cells (``l1 * sum|1 - m| + tv * sum TV_beta``, the
    official code's ``l1_lambda`` on the sum), the blur of the upsampled mask is differentiated
    (no straight-through), the null image is the input blurred with sigma ``null_blur_sigma``
    (scipy's ``gaussian_filter``: ``truncate=4``, reflect border), and each iteration crops
    image and null image at a random offset ``j1, j2`` in ``[0, jitter)``: here the image is
    padded by ``jitter`` edge pixels at its bottom and right and a window of its size cropped
    (the code crops from a slightly larger input). The offsets of iteration ``i`` come from
    ``fold_in(key, i)`` and are shared by the examples of the batch, so an example's result
    does not depend on the batch it is in. ``jitter=0`` makes the explainer deterministic (no
    ``key``).

    Differences from the official code: its initialisation is ``1 -`` a blurred disk whose
    radius a preliminary search picks (``test_circular_masks``); here ``init="circular"`` (the
    Visual Summaries disk, not blurred) or ``"ones"``. TorchRay's *extremal perturbation*
    (Fong, Patrick, Vedaldi, ICCV 2019) does not fall out of this machinery by changing options:
    it replaces the L1 term by an area constraint on the sorted mask values (a ranking loss),
    parametrises masks by smooth max-convolution, and runs several areas at once; it is not
    built here.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn``; ``x`` is
        ``[B, H, W, C]`` with ``H`` and ``W`` multiples of ``mask_scale``.
      iterations: optimiser steps (300).
      learning_rate: Adam's learning rate (0.1); unused when ``optimizer`` is given.
      l1: weight of ``sum|1 - m|`` (1e-4).
      tv: weight of the summed ``TV_beta(m)`` (1e-2).
      tv_beta: the TV exponent (3).
      jitter: the largest random offset, in pixels, plus one (4); 0 for none.
      mask_scale: input pixels per mask cell (8).
      mask_blur_sigma: sigma of the blur of the upsampled mask (5).
      null_blur_sigma: sigma of the null image's blur (10).
      init: ``"circular"`` or ``"ones"``.
      optimizer: an optax optimiser replacing ``optax.adam(learning_rate)``.

    Returns:
      ``explain(params, x, target=None, *, key, init_mask=None) ->`` :class:`MaskExplanation`
      (result ``"mask"``).

    Example:
      >>> import jax, jax.numpy as jnp, xaijax
      >>> f = lambda p, x: jnp.stack([x[:, 4:12, 4:12].sum((1, 2, 3)), jnp.zeros(len(x))], 1)
      >>> mp = xaijax.masks.meaningful_perturbation(f, iterations=5, mask_scale=4)
      >>> mp(None, jnp.ones((2, 16, 16, 1)), key=jax.random.key(0)).map.shape
      (2, 16, 16)

    References:
      Fong, Vedaldi, "Interpretable Explanations of Black Boxes by Meaningful Perturbation",
      ICCV 2017 (code: ruthcfong/perturb_explanations).
    """
    net = as_model(model, what="meaningful_perturbation")
    l1, tv, tv_beta, _ = _coefficients(l1, tv, tv_beta)
    iterations = v.check_positive_int(iterations, "iterations")
    mask_scale = v.check_positive_int(mask_scale, "mask_scale")
    if isinstance(jitter, bool) or not isinstance(jitter, int | np.integer) or jitter < 0:
        raise errors.InvalidArgumentError(
            f"`jitter` must be a non-negative integer (pixels), got {jitter!r}."
        )
    jitter = int(jitter)
    mask_blur_sigma = v.check_positive_number(mask_blur_sigma, "mask_blur_sigma")
    null_blur_sigma = v.check_positive_number(null_blur_sigma, "null_blur_sigma")
    init = v.check_choice(init, "init", INITS)
    opt = _optimizer(optimizer, learning_rate)
    opts = options(
        iterations=iterations,
        learning_rate=learning_rate if optimizer is None else None,
        l1=l1,
        tv=tv,
        tv_beta=tv_beta,
        jitter=jitter,
        mask_scale=mask_scale,
        mask_blur_sigma=mask_blur_sigma,
        null_blur_sigma=null_blur_sigma,
        init=init,
        optimizer=None if optimizer is None else type(optimizer).__name__,
    )
    return _engine(
        net,
        "meaningful_perturbation",
        iterations=iterations,
        optimizer=opt,
        l1=l1,
        tv=tv,
        tv_beta=tv_beta,
        lasso=0.0,
        reduce="sum",
        mask_scale=mask_scale,
        mask_blur_sigma=mask_blur_sigma,
        straight_through=False,
        null_blur_sigma=null_blur_sigma,
        null_kernel_size=None,
        null_border="reflect",
        null_truncate=4.0,
        init=init,
        jitter=jitter,
        opts=opts,
    )
