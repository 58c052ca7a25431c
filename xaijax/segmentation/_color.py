"""Colour conversion used by SLIC (sRGB in [0, 1] -> CIE Lab, D65 white, as scikit-image)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# sRGB (linear) -> XYZ, D65; the matrix scikit-image's ``rgb2xyz`` uses.
_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_D65_WHITE = (0.95047, 1.0, 1.08883)


def rgb_to_lab(rgb: jax.typing.ArrayLike) -> jax.Array:
    """Converts sRGB values in [0, 1] to CIE L*a*b* (D65 illuminant, 2 degree observer).

    Follows ``skimage.color.rgb2lab``: inverse sRGB gamma, the linear RGB->XYZ matrix, division by
    the D65 white point and the cube-root compression with its linear toe.

    Args:
      rgb: array ``[..., 3]`` of sRGB values in [0, 1].

    Returns:
      Array ``[..., 3]``: L in [0, 100], a and b roughly in [-128, 127].

    Examples:
      >>> import jax.numpy as jnp
      >>> lab = rgb_to_lab(jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))  # white, red
      >>> [round(float(v)) for v in lab[1]]
      [53, 80, 67]
    """
    rgb = jnp.asarray(rgb)

    # Powers as exp(p * log(.)) of clamped positive values: XLA:CPU's pow and cbrt are 10-30x
    # slower than exp/log. Channel by channel: a contraction over a trailing axis of 3 defeats
    # XLA's loop fusion on CPU.
    def linear(c):
        gamma = jnp.exp(2.4 * jnp.log((jnp.maximum(c, 0.04045) + 0.055) / 1.055))
        return jnp.where(c > 0.04045, gamma, c / 12.92)

    def compress(t):
        root = jnp.exp(jnp.log(jnp.maximum(t, 0.008856)) / 3.0)
        return jnp.where(t > 0.008856, root, 7.787 * t + 16.0 / 116.0)

    r, g, b = (linear(rgb[..., i]) for i in range(3))
    fx, fy, fz = (
        compress((m[0] * r + m[1] * g + m[2] * b) / w)
        for m, w in zip(_RGB_TO_XYZ, _D65_WHITE, strict=True)
    )
    return jnp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)
