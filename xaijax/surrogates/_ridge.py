"""Closed-form weighted least squares for surrogate models (single example; vmap for batches)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def weighted_ridge(
    features: jax.Array, y: jax.Array, weights: jax.Array, mask: jax.Array, alpha: float
) -> tuple[jax.Array, jax.Array]:
    """Weighted ridge regression with an unpenalised intercept, as ``sklearn.linear_model.Ridge``.

    Minimises ``sum_n w_n (y_n - b - x_n . beta)^2 + alpha |beta|^2`` over the columns selected by
    ``mask`` (the others get coefficient 0) by solving the ``(d + 1) x (d + 1)`` normal
    equations of ``[X, 1]`` with the intercept row unpenalised. Columns are first centred by
    their weighted means (scikit-learn does the same), which decouples the intercept from the
    coefficients and keeps the float32 system well conditioned. Excluded columns are replaced by
    identity rows, so every shape stays static. With ``alpha = 0`` a relative jitter of 1e-6 on
    the diagonal keeps a rank-deficient design solvable.

    Args:
      features: ``[N, d]`` design matrix.
      y: ``[N]`` targets.
      weights: ``[N]`` non-negative sample weights.
      mask: ``[d]`` bool, the columns in the model.
      alpha: L2 penalty on the coefficients.

    Returns:
      ``(coef [d], intercept [])``.
    """
    m = mask.astype(features.dtype)
    total = jnp.maximum(jnp.sum(weights), 1e-30)
    x_mean = (weights @ features) / total
    y_mean = (weights @ y) / total
    xc = (features - x_mean[None, :]) * m[None, :]
    yc = y - y_mean
    wx = xc * weights[:, None]
    gram = wx.T @ xc
    d = features.shape[1]
    jitter = 0.0
    if alpha == 0:
        jitter = 1e-6 * jnp.sum(jnp.diagonal(gram) * m) / jnp.maximum(jnp.sum(m), 1.0)
    gram = gram + jnp.diag(m * (alpha + jitter) + (1.0 - m))
    # Unknowns [beta; c]: the intercept column of the centred design is orthogonal to the
    # centred features, so the system is block diagonal; b = y_mean - x_mean . beta + c.
    ones_col = weights @ xc  # ~0 after centring; kept so the system is the literal (d+1) one
    top = jnp.concatenate([gram, ones_col[:, None]], axis=1)
    bottom = jnp.concatenate([ones_col[None, :], total.reshape(1, 1)], axis=1)
    system = jnp.concatenate([top, bottom], axis=0)
    rhs = jnp.concatenate([wx.T @ yc, (weights @ yc).reshape(1)])
    solution = jnp.linalg.solve(system, rhs)
    coef = solution[:d] * m
    intercept = y_mean - x_mean @ coef + solution[d]
    return coef, intercept


def weighted_r2(
    features: jax.Array, y: jax.Array, weights: jax.Array, coef: jax.Array, intercept: jax.Array
) -> jax.Array:
    """Weighted coefficient of determination, as ``sklearn.metrics.r2_score(sample_weight=w)``.

    A constant target gives 1 when it is fitted exactly and 0 otherwise (scikit-learn's
    ``force_finite`` convention), never NaN.
    """
    pred = features @ coef + intercept
    y_mean = jnp.sum(weights * y) / jnp.maximum(jnp.sum(weights), 1e-30)
    num = jnp.sum(weights * (y - pred) ** 2)
    den = jnp.sum(weights * (y - y_mean) ** 2)
    return jnp.where(
        den > 0, 1.0 - num / jnp.where(den > 0, den, 1.0), jnp.where(num > 0, 0.0, 1.0)
    )


def constrained_least_squares(
    features: jax.Array, y: jax.Array, weights: jax.Array, mask: jax.Array, total: jax.Array
) -> jax.Array:
    """Weighted least squares without intercept under the constraint ``sum(beta) = total``.

    Solves the KKT system ``[[X^T W X, 1], [1^T, 0]] [beta; lambda] = [X^T W y; total]`` over the
    columns in ``mask`` (KernelSHAP's efficiency constraint); excluded columns get 0. A relative
    jitter of 1e-6 on the diagonal keeps rank-deficient designs solvable without affecting the
    constraint.

    Returns:
      ``beta [d]``.
    """
    m = mask.astype(features.dtype)
    x = features * m[None, :]
    gram = (x * weights[:, None]).T @ x
    diag = jnp.diagonal(gram)
    jitter = 1e-6 * jnp.sum(diag * m) / jnp.maximum(jnp.sum(m), 1.0)
    gram = gram + jnp.diag(m * jitter + (1.0 - m))
    d = features.shape[1]
    top = jnp.concatenate([gram, m[:, None]], axis=1)
    bottom = jnp.concatenate([m[None, :], jnp.zeros((1, 1), gram.dtype)], axis=1)
    system = jnp.concatenate([top, bottom], axis=0)
    rhs = jnp.concatenate([(x * weights[:, None]).T @ y, jnp.reshape(total, (1,))])
    return jnp.linalg.solve(system, rhs)[:d] * m
