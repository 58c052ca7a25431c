"""From fixations to pictures and boxes: outlier removal, heatmap, the two box rules, points.

All follow the authors' ``demo/utils.py`` (``out_rem``, ``heatmap``) as specified in
``shared/papers.md`` 6(b).9-10, on fixation maps ``[B, *S]`` (bool, or per-location counts).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _filters, _validation, errors
from xaijax.typing import Array, ArrayLike

BOX_RULES = ("points", "heatmap")


def _check_map(fixation_map, name: str = "fixation_map", *, rank: int | None = None) -> Array:
    if not hasattr(fixation_map, "shape") or not hasattr(fixation_map, "dtype"):
        fixation_map = np.asarray(fixation_map)
    if rank is not None and fixation_map.ndim != rank:
        raise errors.InputShapeError(
            f"`{name}` must have rank {rank} ([B, H, W]), got shape {list(fixation_map.shape)}. "
            "Boxes are defined for 2-D images; for one map add a batch axis: `m[None]`."
        )
    if fixation_map.ndim < 2:
        raise errors.InputShapeError(
            f"`{name}` must be a batch of fixation maps [B, ...], got shape "
            f"{list(fixation_map.shape)}. For one map add a batch axis: `{name}[None]`."
        )
    dt = fixation_map.dtype
    if not (jnp.issubdtype(dt, jnp.bool_) or jnp.issubdtype(dt, jnp.number)):
        raise errors.InputDTypeError(
            f"`{name}` must be boolean or hold counts, got dtype {dt}: pass the output of "
            "`fixations(...)(params, x)`."
        )
    if jnp.issubdtype(dt, jnp.complexfloating):
        raise errors.InputDTypeError(f"`{name}` must be real, got dtype {dt}.")
    if _validation.is_concrete(fixation_map) and not jnp.issubdtype(dt, jnp.bool_):
        # Value checks on the map's own device: one boolean each comes back, never the map.
        _validation.check_finite(fixation_map, name)
        if isinstance(fixation_map, np.ndarray):
            negative = bool(np.any(fixation_map < 0))
        else:
            negative = bool(_validation.fetch(_any_negative, fixation_map))
        if negative:
            raise errors.InvalidArgumentError(
                f"`{name}` must hold non-negative counts; found negative values. Pass the "
                "boolean map or the counts of `fixations(...)`."
            )
    return jnp.asarray(fixation_map)


@jax.jit
def _any_negative(x: Array) -> Array:
    return jnp.any(x < 0)


def _check_fraction(value, name: str, *, allow_zero: bool = True) -> float:
    if not allow_zero:
        return _validation.check_fraction(value, name)
    value = _validation.check_nonnegative_number(value, name)
    if value > 1:
        raise errors.InvalidArgumentError(f"`{name}` must be in [0, 1], got {value!r}.")
    return value


def _ball(shape: tuple[int, ...], radius: float) -> np.ndarray:
    """Indicator of the integer offsets at Euclidean distance ``< radius`` (an odd-sized box)."""
    r = max(0, math.ceil(radius) - 1)
    r = min(r, max(shape) - 1)
    grids = np.meshgrid(*[np.arange(-r, r + 1)] * len(shape), indexing="ij")
    dist2 = sum(g.astype(np.float64) ** 2 for g in grids)
    return (dist2 < radius**2).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("radius_fraction", "min_fraction"))
def _remove_outliers(counts: Array, radius_fraction: float, min_fraction: float) -> Array:
    spatial = counts.shape[1:]
    diag = math.sqrt(sum(s * s for s in spatial))
    kernel = _ball(spatial, radius_fraction * diag)
    c = counts.astype(jnp.float32)
    neighbours = jax.lax.conv_general_dilated(
        c[:, None],
        jnp.asarray(kernel)[None, None],
        window_strides=(1,) * len(spatial),
        padding="SAME",
        precision=jax.lax.Precision.HIGHEST,
    )[:, 0]
    total = jnp.sum(c, axis=tuple(range(1, c.ndim)), keepdims=True)
    # The authors keep a point iff its neighbours (itself included) exceed 5 % of all points.
    keep = (counts > 0) & (jnp.round(neighbours) > min_fraction * total)
    return jnp.where(keep, counts, 0).astype(jnp.int32)


def remove_outliers(
    fixation_map: ArrayLike, *, radius_fraction: float = 0.1, min_fraction: float = 0.05
) -> Array:
    """Drops isolated fixations (the authors' ``out_rem``).

    With ``d = radius_fraction * diagonal``, a fixated location is kept iff the number of
    fixations at Euclidean distance ``< d`` (itself and its own multiplicity included) exceeds
    ``min_fraction`` of all fixations of the map. Counts are multiplicities: a location fixated
    in 3 channels is 3 points, as in the authors' point lists.

    Args:
      fixation_map: ``[B, *S]`` bool or counts (any number of spatial axes).
      radius_fraction: neighbourhood radius as a fraction of the map's diagonal (0.1).
      min_fraction: share of all points a neighbourhood must exceed (0.05).

    Returns:
      ``[B, *S]`` int32 counts with the outliers set to 0.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax.fixations import remove_outliers
      >>> m = jnp.zeros((1, 20, 20), bool).at[0, 2:7, 2:7].set(True).at[0, 18, 18].set(True)
      >>> kept = remove_outliers(m)  # 26 points: the lone one has 1 <= 5 % of 26 neighbours
      >>> int(kept.sum()), bool(kept[0, 18, 18])
      (25, False)

    References:
      Mopuri, Garg and Babu, "CNN Fixations", IEEE TIP 2019; ``val-iisc/cnn-fixations``
      ``demo/utils.py``.
    """
    m = _check_map(fixation_map)
    r = _check_fraction(radius_fraction, "radius_fraction", allow_zero=False)
    f = _check_fraction(min_fraction, "min_fraction")
    return _remove_outliers(m, r, f)


def default_kernel_size(spatial: tuple[int, ...]) -> int:
    """The authors' blur size: the smallest side, forced odd."""
    k = min(spatial)
    return k if k % 2 == 1 else max(1, k - 1)


@functools.partial(
    jax.jit, static_argnames=("sigma", "outliers", "radius_fraction", "min_fraction")
)
def _heatmap(
    m: Array, sigma: float | None, outliers: bool, radius_fraction: float, min_fraction: float
) -> Array:
    counts = _remove_outliers(m, radius_fraction, min_fraction) if outliers else m
    h = counts.astype(jnp.float32)
    spatial = h.shape[1:]
    k = default_kernel_size(spatial)
    s = k / 10.45 if sigma is None else sigma
    # A Gaussian of size k with reflect-101 borders (OpenCV's default BORDER_REFLECT_101).
    h = _filters.gaussian_blur(h[..., None], s, size=k, border="reflect101")[..., 0]
    peak = jnp.max(h, axis=tuple(range(1, h.ndim)), keepdims=True)
    return jnp.where(peak > 0, h / jnp.where(peak > 0, peak, 1.0), 0.0)


def heatmap(
    fixation_map: ArrayLike,
    *,
    sigma: float | None = None,
    remove_outliers: bool = True,
    radius_fraction: float = 0.1,
    min_fraction: float = 0.05,
) -> Array:
    """Dense localisation map: the fixation counts, outliers removed, Gaussian-blurred.

    As the authors' ``heatmap``: one count per fixation (pass ``channel_reduction="count"``
    maps to weight a location by its fixated channels), outlier removal (:func:`remove_outliers`),
    a Gaussian blur of size ``k = min side`` (forced odd) with reflect-101 borders (OpenCV's
    default), and scaling by the maximum (to [0, 1] here, 0-255 there). The authors' ``sigma =
    20`` is tuned for ~224-px images; the default scales it with the image,
    ``sigma = k / 10.45`` (the PyTorch port's rule; 21.3 at 224 px, 6.0 at 64 px).

    Args:
      fixation_map: ``[B, *S]`` bool or counts.
      sigma: blur standard deviation in pixels; ``None`` for ``k / 10.45``.
      remove_outliers: apply :func:`remove_outliers` first.
      radius_fraction, min_fraction: its parameters.

    Returns:
      ``[B, *S]`` float32 in [0, 1] (all zeros for a map without fixations).

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax.fixations import heatmap
      >>> h = heatmap(jnp.zeros((1, 9, 9), bool).at[0, 4, 4].set(True), remove_outliers=False)
      >>> float(h[0, 4, 4]), bool(h[0, 4, 3] < 1.0)
      (1.0, True)
    """
    m = _check_map(fixation_map)
    if sigma is not None:
        sigma = _validation.check_positive_number(sigma, "sigma")
    r = _check_fraction(radius_fraction, "radius_fraction", allow_zero=False)
    f = _check_fraction(min_fraction, "min_fraction")
    return _heatmap(m, sigma, bool(remove_outliers), r, f)


def boxes(
    fixation_map: ArrayLike,
    *,
    rule: str = "points",
    threshold: float = 0.15,
    sigma: float | None = None,
    remove_outliers: bool = True,
    radius_fraction: float = 0.1,
    min_fraction: float = 0.05,
) -> Array:
    """A localisation box per image, by either rule of ``papers.md`` 6(b).10.

    The authors ship precomputed boxes but not the code that made them; both plausible rules are
    offered. ``"points"`` ("cnnfix-points-box"): the tight box around the fixations left by
    :func:`remove_outliers`. ``"heatmap"`` ("cnnfix-heatmap-box"): the Grad-CAM WSOL protocol on
    :func:`heatmap`: threshold at ``threshold`` of the max, box of the largest 4-connected
    component (:func:`xaijax.metrics.box_from_map`).

    Args:
      fixation_map: ``[B, H, W]`` bool or counts.
      rule: ``"points"`` or ``"heatmap"``.
      threshold: the heatmap rule's relative threshold (Grad-CAM: 0.15).
      sigma, remove_outliers, radius_fraction, min_fraction: as in :func:`heatmap`.

    Returns:
      ``[B, 4]`` int32 boxes ``(y0, x0, y1, x1)``, inclusive-exclusive like
      :mod:`xaijax.metrics`; ``(0, 0, 0, 0)`` when there is nothing to box.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax.fixations import boxes
      >>> m = jnp.zeros((1, 20, 20), bool).at[0, 2:5, 3:9].set(True)
      >>> boxes(m).tolist()
      [[2, 3, 5, 9]]
    """
    from xaijax import metrics

    m = _check_map(fixation_map, rank=3)
    _validation.check_choice(rule, "rule", BOX_RULES)
    if rule == "points":
        r = _check_fraction(radius_fraction, "radius_fraction", allow_zero=False)
        f = _check_fraction(min_fraction, "min_fraction")
        kept = _remove_outliers(m, r, f) if remove_outliers else m
        return metrics.boxes_from_mask(kept > 0)
    h = heatmap(
        m,
        sigma=sigma,
        remove_outliers=remove_outliers,
        radius_fraction=radius_fraction,
        min_fraction=min_fraction,
    )
    return metrics.box_from_map(h, threshold=threshold)


def fixation_points(fixation_map: ArrayLike) -> list[np.ndarray]:
    """The fixations as coordinate lists, one ``[n_i, ndim]`` int array per example (on host).

    Not jittable (the number of points varies); use the map itself inside ``jit``.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax.fixations import fixation_points
      >>> fixation_points(jnp.eye(3, dtype=bool)[None])[0].tolist()
      [[0, 0], [1, 1], [2, 2]]
    """
    m = np.asarray(_check_map(fixation_map))
    return [np.argwhere(mi > 0).astype(np.int64) for mi in m]
