"""Structural similarity (Wang et al. 2004) in JAX, as ``skimage.metrics.structural_similarity``.

Local means, variances and covariance come from a ``win_size x win_size`` window (uniform, or
Gaussian with sigma 1.5 truncated at 3.5 sigma); the SSIM map is averaged over the windows that
lie wholly inside the image, which is skimage's "crop the border by ``(win_size - 1) // 2``".
The images are centred on their own means before the second moments are taken, which removes
most float32 cancellation in ``E[x^2] - E[x]^2`` (the result is mathematically unchanged).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _filters, errors
from xaijax import _validation as v
from xaijax.typing import Array, ArrayLike

_SIGMA = 1.5
_TRUNCATE = 3.5


def _taps(win_size: int, gaussian: bool) -> np.ndarray:
    if not gaussian:
        return np.full(win_size, 1.0 / win_size)
    # The package's one Gaussian kernel builder: skimage's window (sigma 1.5, truncated at
    # 3.5 sigma: 11 taps), in float64.
    return _filters.gaussian_kernel1d(_SIGMA, truncate=_TRUNCATE, dtype=np.float64)


def _valid_matrix(n: int, taps: np.ndarray, dtype) -> Array:
    """``[n - k + 1, n]``: row ``i`` holds ``taps`` at columns ``i .. i + k - 1``."""
    k = len(taps)
    m = np.zeros((n - k + 1, n))
    for i in range(n - k + 1):
        m[i, i : i + k] = taps
    return jnp.asarray(m, dtype)


def _check_options(data_range, win_size, gaussian_weights, k1, k2) -> tuple[float, int]:
    data_range = v.check_positive_number(data_range, "data_range")
    v.check_nonnegative_number(k1, "K1")
    v.check_nonnegative_number(k2, "K2")
    if gaussian_weights:
        if win_size not in (None, 11):
            raise errors.InvalidArgumentError(
                "With `gaussian_weights=True` the window is skimage's Gaussian (sigma 1.5, "
                f"truncated to 11 taps): leave `win_size` as None (or 11), got {win_size!r}."
            )
        return data_range, 11
    win_size = 7 if win_size is None else win_size
    if isinstance(win_size, bool) or not isinstance(win_size, int | np.integer):
        raise errors.InvalidArgumentError(f"`win_size` must be an odd int >= 3, got {win_size!r}.")
    if win_size < 3 or win_size % 2 == 0:
        raise errors.InvalidArgumentError(
            f"`win_size` must be an odd int >= 3 (skimage's windows are centred), got {win_size}."
        )
    return data_range, int(win_size)


def _check_images(x, name: str, min_rank: int, layout: str) -> Array:
    x = v.as_array(x, name)
    if x.ndim < min_rank:
        raise errors.InputShapeError(
            f"`{name}` must be laid out as {layout}, got shape {v._shape_str(x.shape)}."
        )
    if not v.is_real(x.dtype):
        raise errors.InputDTypeError(f"`{name}` must hold real numbers, got dtype {x.dtype}.")
    v.check_finite(x, name)
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _check_size(shape, win_size: int, name: str) -> None:
    if shape[-2] < win_size or shape[-1] < win_size:
        raise errors.InputShapeError(
            f"`{name}` of {shape[-2]} x {shape[-1]} pixels is smaller than the {win_size} x "
            f"{win_size} SSIM window: use larger crops or a smaller odd `win_size`."
        )


def _ssim_core(a, b, win_size, gaussian, data_range, k1, k2, sample_cov) -> Array:
    """SSIM of ``a``, ``b`` with equal shapes ``[..., H, W]`` -> ``[...]``."""
    taps = _taps(win_size, gaussian)
    mh = _valid_matrix(a.shape[-2], taps, a.dtype)
    mw = _valid_matrix(a.shape[-1], taps, a.dtype)

    def filt(x):
        return jnp.einsum("ih,...hw,jw->...ij", mh, x, mw, precision=jax.lax.Precision.HIGHEST)

    ma = jnp.mean(a, axis=(-2, -1), keepdims=True)
    mb = jnp.mean(b, axis=(-2, -1), keepdims=True)
    a, b = a - ma, b - mb
    ua, ub = filt(a), filt(b)
    n = win_size**2
    cov_norm = n / (n - 1) if sample_cov else 1.0
    va = cov_norm * (filt(a * a) - ua * ua)
    vb = cov_norm * (filt(b * b) - ub * ub)
    vab = cov_norm * (filt(a * b) - ua * ub)
    ua, ub = ua + ma, ub + mb
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = (2 * ua * ub + c1) * (2 * vab + c2) / ((ua**2 + ub**2 + c1) * (va + vb + c2))
    return jnp.mean(s, axis=(-2, -1))


_ssim_jit = jax.jit(_ssim_core, static_argnums=(2, 3, 4, 5, 6, 7))


def ssim(
    a: ArrayLike,
    b: ArrayLike,
    *,
    data_range: float = 1.0,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    K1: float = 0.01,  # noqa: N803 (skimage's names)
    K2: float = 0.03,  # noqa: N803
    use_sample_covariance: bool = True,
) -> Array:
    """Mean structural similarity of grey image pairs, ``structural_similarity``'s value.

    .. math::
        \\mathrm{SSIM} = \\frac{(2\\mu_a\\mu_b + C_1)(2\\sigma_{ab} + C_2)}
        {(\\mu_a^2 + \\mu_b^2 + C_1)(\\sigma_a^2 + \\sigma_b^2 + C_2)},\\quad
        C_i = (K_i \\cdot \\mathrm{data\\_range})^2,

    averaged over every window that lies wholly inside the image. Jittable and vmappable.

    Args:
      a: grey images ``[..., H, W]`` (any leading axes; integers are cast to float32).
      b: the same shape as ``a``.
      data_range: the images' value range (1 for ``[0, 1]`` floats, 255 for 8-bit values).
      win_size: odd window side; ``None`` = 7 (uniform) or 11 (Gaussian, the only size allowed).
      gaussian_weights: Gaussian window (sigma 1.5) as Wang et al.; default uniform (skimage).
      K1, K2: the stabilising constants.
      use_sample_covariance: divide by ``N - 1`` (skimage's default) instead of ``N``.

    Returns:
      ``[...]`` SSIM per pair (1 for identical images).

    Raises:
      InputShapeError: different shapes, rank < 2, or images smaller than the window.
      InvalidArgumentError: a bad ``data_range``, ``win_size``, ``K1`` or ``K2``.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.linspace(0.0, 1.0, 256).reshape(1, 16, 16)
        >>> float(ssim(x, x)[0])
        1.0

    References:
      Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to
      structural similarity", IEEE TIP 2004; scikit-image ``skimage.metrics.structural_similarity``.
    """
    data_range, win_size = _check_options(data_range, win_size, gaussian_weights, K1, K2)
    a = _check_images(a, "a", 2, "[..., H, W]")
    b = _check_images(b, "b", 2, "[..., H, W]")
    v.check_same_shape(a, b, "a", "b")
    _check_size(a.shape, win_size, "a")
    dtype = jnp.result_type(a.dtype, b.dtype)
    return _ssim_jit(
        a.astype(dtype),
        b.astype(dtype),
        win_size,
        bool(gaussian_weights),
        data_range,
        float(K1),
        float(K2),
        bool(use_sample_covariance),
    )


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _pairwise(crops, win_size, gaussian, data_range, k1, k2, sample_cov, chunk_size) -> Array:
    def row(x):  # x [..., H, W] against every crop
        tiled = jnp.broadcast_to(x[..., None, :, :], crops.shape)
        return _ssim_core(tiled, crops, win_size, gaussian, data_range, k1, k2, sample_cov)

    rows = jax.lax.map(row, jnp.moveaxis(crops, -3, 0), batch_size=chunk_size)  # [M, ..., M]
    return jnp.moveaxis(rows, 0, -2)


def pairwise_ssim(
    crops: ArrayLike,
    *,
    data_range: float = 1.0,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    K1: float = 0.01,  # noqa: N803
    K2: float = 0.03,  # noqa: N803
    use_sample_covariance: bool = True,
    chunk_size: int | None = None,
) -> Array:
    """SSIM between every pair of a set of grey crops (the summaries' quality filter, 4(b) C.7).

    Args:
      crops: ``[..., M, H, W]`` grey crops (one set per leading index).
      data_range, win_size, gaussian_weights, K1, K2, use_sample_covariance: see :func:`ssim`.
      chunk_size: rows computed at once (``jax.lax.map``), bounding memory to
        ``chunk_size * M * H * W`` values; ``None`` = all rows at once.

    Returns:
      ``[..., M, M]`` with ``out[..., i, j] = ssim(crops[..., i, :, :], crops[..., j, :, :])``
      (symmetric up to rounding, 1 on the diagonal).

    Example:
        >>> import jax
        >>> crops = jax.random.uniform(jax.random.key(0), (4, 16, 16))
        >>> pairwise_ssim(crops).shape
        (4, 4)

    References:
      Wang et al., IEEE TIP 2004; Godi et al., "Understanding deep architectures by visual
      summaries", BMVC 2018 (per-cluster median of the off-diagonal SSIM).
    """
    data_range, win_size = _check_options(data_range, win_size, gaussian_weights, K1, K2)
    crops = _check_images(crops, "crops", 3, "[..., M, H, W]")
    _check_size(crops.shape, win_size, "crops")
    if chunk_size is not None:
        v.check_positive_int(chunk_size, "chunk_size")
    return _pairwise(
        crops,
        win_size,
        bool(gaussian_weights),
        data_range,
        float(K1),
        float(K2),
        bool(use_sample_covariance),
        chunk_size,
    )
