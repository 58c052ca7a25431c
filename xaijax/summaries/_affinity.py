"""Affinity propagation (Frey & Dueck 2007) in JAX: one jitted ``lax.while_loop``.

The updates, damping, convergence rule and final exemplar refinement follow scikit-learn's
``affinity_propagation`` (``sklearn/cluster/_affinity_propagation.py``), which follows Frey &
Dueck's ``apcluster.m``:

* responsibilities ``r(i,k) = s(i,k) - max_{k' != k} (a(i,k') + s(i,k'))``; availabilities
  ``a(i,k) = min(0, r(k,k) + sum_{i' not in {i,k}} max(0, r(i',k)))``,
  ``a(k,k) = sum_{i' != k} max(0, r(i',k))``; both damped ``new = (1 - d) new + d old``;
* the exemplars ``E = {k : a(k,k) + r(k,k) > 0}`` must stay the same for ``convergence_iter``
  iterations (checked from iteration ``convergence_iter`` on) and be non-empty;
* then each point joins its most similar exemplar, each cluster's exemplar is replaced by the
  member with the largest summed similarity to the cluster, and points are assigned again.

**Tie-breaking noise.** scikit-learn (and ``apcluster.m``) add
``(eps * S + 100 * tiny) * N(0, 1)`` to ``S`` to break ties. Here nothing is added unless a
``key`` is given (then the same formula with ``jax.random.normal`` and the dtype's ``eps``), so
the default result is deterministic. In float32 the float64 noise of scikit-learn is below
resolution; to reproduce a scikit-learn run exactly, add its noise to ``S`` (and the diagonal
preference) yourself and pass that matrix with ``preference=diag``.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp

from xaijax import _validation as v
from xaijax import errors
from xaijax.typing import Array, ArrayLike, PRNGKey


class AffinityPropagationResult(NamedTuple):
    """What :func:`affinity_propagation` returns (``n`` points).

    Attributes:
      labels: ``[n]`` int32 cluster of each point, ``0 .. n_clusters - 1`` in the order of the
        exemplars' indices (scikit-learn's ``labels_``); all ``-1`` when there is no exemplar.
      exemplars: ``[n]`` int32 exemplar indices, increasing, padded with ``-1`` after the first
        ``n_clusters`` (scikit-learn's ``cluster_centers_indices_``, padded to a static size).
      is_exemplar: ``[n]`` bool.
      n_clusters: ``[]`` int32.
      n_iter: ``[]`` int32 iterations run (scikit-learn's ``n_iter_``).
      converged: ``[]`` bool; ``False`` when ``max_iter`` ran out first (the labels are then
        those of the last iteration and may be degenerate; a ``RuntimeWarning`` is issued).
    """

    labels: Array
    exemplars: Array
    is_exemplar: Array
    n_clusters: Array
    n_iter: Array
    converged: Array


def _iterate(s, damping, max_iter, convergence_iter):
    n = s.shape[0]
    eye = jnp.eye(n, dtype=bool)
    rows = jnp.arange(n)

    def body(state):
        it, a, r, history, _ = state
        tmp = a + s
        best = jnp.argmax(tmp, axis=1)
        first = tmp[rows, best]
        second = jnp.max(tmp.at[rows, best].set(-jnp.inf), axis=1)
        r_new = (s - first[:, None]).at[rows, best].set(s[rows, best] - second)
        r = damping * r + (1 - damping) * r_new
        rp = jnp.where(eye, r, jnp.maximum(r, 0.0))
        a_new = jnp.sum(rp, axis=0)[None, :] - rp  # = -tmp of scikit-learn
        a_new = jnp.where(eye, a_new, jnp.minimum(a_new, 0.0))
        a = damping * a + (1 - damping) * a_new
        e = (jnp.diagonal(a) + jnp.diagonal(r)) > 0
        history = history.at[:, it % convergence_iter].set(e)
        se = jnp.sum(history, axis=1)
        stable = jnp.all((se == convergence_iter) | (se == 0))
        done = (it >= convergence_iter) & stable & jnp.any(e)
        return it + 1, a, r, history, done

    def cond(state):
        it, *_, done = state
        return (it < max_iter) & ~done

    zeros = jnp.zeros_like(s)
    history = jnp.zeros((n, convergence_iter), jnp.int32)
    init = (jnp.int32(0), zeros, zeros, history, jnp.bool_(False))
    it, a, r, _, done = jax.lax.while_loop(cond, body, init)
    return (jnp.diagonal(a) + jnp.diagonal(r)) > 0, it, done


def _assign(s, is_exemplar):
    n = s.shape[0]
    idx = jnp.arange(n)
    nearest = jnp.argmax(jnp.where(is_exemplar[None, :], s, -jnp.inf), axis=1)
    return jnp.where(is_exemplar, idx, nearest)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _affinity_propagation(s, preference, damping, noise, max_iter, convergence_iter):
    n = s.shape[0]
    idx = jnp.arange(n)
    eye = jnp.eye(n, dtype=bool)
    # scikit-learn's degenerate case: all off-diagonal similarities equal and all preferences
    # equal -> every point its own cluster if the preference is larger, else one cluster.
    off = jnp.where(eye, s[0, 1 % n], s)
    degenerate = (n == 1) | (jnp.all(off == off[0, 1 % n]) & jnp.all(preference == preference[0]))
    s = jnp.where(eye, preference[None, :], s)
    s = s + (jnp.finfo(s.dtype).eps * s + jnp.finfo(s.dtype).tiny * 100) * noise
    e, n_iter, done = _iterate(s, damping, max_iter, convergence_iter)
    # Assign, refine each cluster's exemplar (largest summed similarity within it), reassign.
    assign = _assign(s, e)
    same = assign[:, None] == assign[None, :]
    within = jnp.sum(jnp.where(same, s, 0.0), axis=0)
    member = assign[None, :] == idx[:, None]  # [cluster k, point j]
    refined = jnp.argmax(jnp.where(member, within[None, :], -jnp.inf), axis=1)
    e_refined = jnp.zeros(n, bool).at[refined].max(e)
    assign = _assign(s, e_refined)
    labels = jnp.where(jnp.any(e_refined), jnp.cumsum(e_refined)[assign] - 1, -1)
    # The degenerate case.
    all_own = preference[0] > s[0, n - 1] if n > 1 else jnp.bool_(True)
    e_deg = jnp.where(all_own, jnp.ones(n, bool), idx == 0)
    labels_deg = jnp.where(all_own, idx, 0)
    is_exemplar = jnp.where(degenerate, e_deg, e_refined)
    labels = jnp.where(degenerate, labels_deg, labels).astype(jnp.int32)
    exemplars = jnp.nonzero(is_exemplar, size=n, fill_value=-1)[0].astype(jnp.int32)
    return AffinityPropagationResult(
        labels=labels,
        exemplars=exemplars,
        is_exemplar=is_exemplar,
        n_clusters=jnp.sum(is_exemplar).astype(jnp.int32),
        n_iter=jnp.where(degenerate, 0, n_iter).astype(jnp.int32),
        converged=degenerate | done,
    )


def _warn(converged, n_clusters) -> None:
    if not bool(converged):
        tail = (
            "the labels may be degenerate"
            if int(n_clusters) > 0
            else "there are no exemplars (labels are all -1)"
        )
        warnings.warn(
            f"Affinity propagation did not converge within max_iter iterations; {tail}. "
            "Raise `max_iter`, raise `damping` towards 1, or check the preference.",
            RuntimeWarning,
            stacklevel=3,
        )


def affinity_propagation(
    similarity: ArrayLike,
    *,
    preference: ArrayLike | float | None = None,
    damping: float = 0.9,
    max_iter: int = 1000,
    convergence_iter: int = 100,
    key: PRNGKey | None = None,
) -> AffinityPropagationResult:
    """Clusters ``n`` points from their similarities by affinity propagation.

    Jittable (one ``lax.while_loop``; ``max_iter`` and ``convergence_iter`` are static) and
    vmappable over a batch of matrices. Defaults are the visual-summaries code's
    (``apcluster.m``: ``maxits 1000, convits 100, dampfact 0.9``), which scikit-learn reproduces
    with ``AffinityPropagation(affinity="precomputed", damping=0.9, max_iter=1000,
    convergence_iter=100)``.

    Args:
      similarity: ``[n, n]`` similarities ``s(i, k)`` (larger = more similar); its diagonal is
        replaced by ``preference``.
      preference: each point's suitability as an exemplar: a number, ``[n]`` values, or ``None``
        for the median of all ``n * n`` entries of ``similarity`` (scikit-learn's default). Larger
        values give more clusters; see :func:`summary_preference` for the paper's choice.
      damping: in ``[0.5, 1)``.
      max_iter: maximum number of iterations.
      convergence_iter: iterations the exemplar set must stay unchanged to stop.
      key: if given, scikit-learn's tie-breaking noise is added to ``S`` (see the module notes);
        ``None`` (default) adds none.

    Returns:
      :class:`AffinityPropagationResult` (labels, exemplars, ``converged`` flag, ...). When the
      iterations run out before convergence, ``converged`` is ``False`` and a
      ``RuntimeWarning`` is issued (also under ``jit``, through ``jax.debug.callback``).

    Raises:
      InputShapeError: ``similarity`` is not square ``[n, n]`` or ``preference`` is not ``[n]``.
      InvalidArgumentError: ``damping`` outside ``[0.5, 1)`` or non-positive iteration counts.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([0.0, 0.1, 0.2, 5.0, 5.1, 5.3])
        >>> s = -((x[:, None] - x[None, :]) ** 2)
        >>> result = affinity_propagation(s)
        >>> result.labels.tolist(), int(result.n_clusters)
        ([0, 0, 0, 1, 1, 1], 2)

    References:
      Frey & Dueck, "Clustering by passing messages between data points", Science 2007;
      scikit-learn ``sklearn.cluster.AffinityPropagation``.
    """
    s = v.check_floating(similarity, "similarity", rank=2, layout="[n, n]")
    n = s.shape[0]
    if s.shape[1] != n:
        raise errors.InputShapeError(
            f"`similarity` must be a square [n, n] matrix, got shape {v._shape_str(s.shape)}."
        )
    damping = v.check_number(damping, "damping")
    if not 0.5 <= damping < 1:
        raise errors.InvalidArgumentError(
            f"`damping` must be in [0.5, 1) (scikit-learn's range), got {damping!r}."
        )
    max_iter = v.check_positive_int(max_iter, "max_iter")
    convergence_iter = v.check_positive_int(convergence_iter, "convergence_iter")
    if preference is None:
        pref = jnp.broadcast_to(jnp.median(s), (n,))
    else:
        pref = jnp.asarray(v.as_array(preference, "preference"), s.dtype)
        if pref.ndim == 0:
            pref = jnp.broadcast_to(pref, (n,))
        elif pref.shape != (n,):
            raise errors.InputShapeError(
                f"`preference` must be a number or [n] = [{n}] values, got shape "
                f"{v._shape_str(pref.shape)}."
            )
    if key is None:
        noise = jnp.zeros_like(s)
    else:
        noise = jax.random.normal(v.check_key(key), s.shape, s.dtype)
    result = _affinity_propagation(s, pref, jnp.asarray(damping, s.dtype), noise, max_iter,
                                   convergence_iter)  # fmt: skip
    if v.is_concrete(result.converged):
        _warn(result.converged, result.n_clusters)
    else:
        jax.debug.callback(_warn, result.converged, result.n_clusters)
    return result


def summary_preference(similarity: ArrayLike, *, factor: float = 1.3) -> tuple[Array, Array]:
    """The visual-summaries code's shift and preference for :func:`affinity_propagation`.

    ``S <- S - max(S)`` (all similarities become ``<= 0``), then
    ``p = factor * median(S)`` over all entries of the shifted matrix (papers.md 4(b) Stage C
    step 5; ``factor = 1.3`` sets how many summaries appear: keep it fixed across networks).

    Args:
      similarity: ``[..., n, n]``.
      factor: the preference multiplier (the code's 1.3).

    Returns:
      ``(shifted [..., n, n], preference [...])``.

    Example:
        >>> import jax.numpy as jnp
        >>> s, p = summary_preference(jnp.array([[1.0, 0.2], [0.2, 1.0]]))
        >>> round(float(p), 4)
        -0.52
        >>> result = affinity_propagation(s, preference=p)
    """
    s = v.check_floating(similarity, "similarity", min_rank=2, layout="[..., n, n]")
    if s.shape[-1] != s.shape[-2]:
        raise errors.InputShapeError(
            f"`similarity` must be square [..., n, n], got shape {v._shape_str(s.shape)}."
        )
    factor = v.check_number(factor, "factor")
    shifted = s - jnp.max(s, axis=(-2, -1), keepdims=True)
    return shifted, factor * jnp.median(shifted, axis=(-2, -1))
