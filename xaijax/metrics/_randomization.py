"""Model-randomisation sanity check (Adebayo et al. 2018), cascading from the output layer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _validation, errors
from xaijax._explainer import as_explainer
from xaijax.metrics._correlation import spearman
from xaijax.typing import Array, ArrayLike, Params, PRNGKey


class RandomizationResult(NamedTuple):
    """Result of :func:`cascading_randomization`.

    Attributes:
      layers: the layer names in the order they were randomised (output first).
      similarity: ``[L, B]``; row ``l`` compares the original maps with those of the model whose
        layers ``layers[0] .. layers[l]`` are all randomised.
    """

    layers: list[str]
    similarity: Array


def cascading_randomization(
    explainer: Any,
    params: Params,
    x: ArrayLike,
    target: ArrayLike | None = None,
    *,
    key: PRNGKey,
    layers: Sequence[str] | None = None,
    similarity: Callable[[Array, Array], Array] = spearman,
    absolute: bool = True,
) -> RandomizationResult:
    """Cascading model-parameter randomisation test of Adebayo et al. ("sanity checks").

    A faithful explanation must depend on the weights: as the layers are re-initialised one by
    one from the output towards the input, the maps should stop resembling the original ones.
    Step ``l`` re-initialises ``layers[0] .. layers[l]`` cumulatively, recomputes
    ``explainer(params_l, x, target)`` and scores ``similarity(original, new)`` (on ``|map|`` when
    ``absolute``, as in the paper). A method whose similarity stays near 1 fails the check.

    ``x`` and ``target`` are checked once, against the original model (the explainer's boundary
    checks); every step then runs the explainer's unchecked ``run`` on the randomised
    parameters, and its maps are checked to be finite (one boolean per step).

    Re-initialisation of a layer: every floating leaf of ``params[layer]`` named ``"bias"`` becomes
    0; every other floating leaf is replaced by Gaussian noise of the same shape and dtype with
    the leaf's own standard deviation (its root-mean-square when that is 0, e.g. a LayerNorm
    scale of ones, so it does not collapse to zeros). Integer leaves are kept. The noise of layer
    ``layers[l]`` is drawn from ``jax.random.fold_in(k0, l)`` with ``k0, k1 =
    jax.random.split(key)``, and is the same at every later step; a stochastic explainer (e.g.
    :func:`xaijax.smooth`) gets ``key=k1`` at every step, so only the weights change.

    Args:
      explainer: an :class:`~xaijax.Explainer` ``explainer(params, x, target) -> maps``;
        ``jax.jit`` of one and ``functools.partial`` of one with keywords are read through. A
        bare function raises :class:`~xaijax.errors.NotAnExplainerError`: make it one with
        ``xaijax.explainer(fn, model)`` (jit ``fn`` to compile it once for the ``L + 1``
        calls). Its model must accept ``params`` as given.
      params: a Flax params dict (nested dicts). If its only top-level key is ``"params"`` (a Linen
        variables dict), the layers are looked up one level down.
      x: the ``[B, ...]`` batch passed to ``explain``.
      target: ``[B]`` class indices or None. With None each randomised model explains *its own*
        predicted class; pass the original predictions to keep the class fixed (as Adebayo et al.).
      key: PRNG key for the re-initialisation (and a stochastic explainer's draws);
        keyword-only.
      layers: top-level keys of ``params``, ordered from the output to the input; default: the
        reverse of the dict's insertion order (Flax inserts layers in call order).
      similarity: ``similarity(a, b) -> [B]`` on two map batches; default :func:`spearman`
        (:func:`kendall`, ``top_k_overlap`` with a fixed ``k`` via ``functools.partial``, or an SSIM
        also fit).
      absolute: compare ``|map|`` instead of signed maps.

    Returns:
      :class:`RandomizationResult` with ``layers`` and ``similarity [L, B]``.

    Raises:
      NotAnExplainerError: ``explainer`` is not an explainer.
      MissingKeyError, InvalidKeyError: no ``key``, or not one PRNG key.
      InvalidArgumentError, UnknownLayerError: bad ``params`` or ``layers``.
      NonFiniteOutputError: the explainer's maps are NaN or Inf for some randomised model.
      The explainer's own boundary errors for a bad ``x`` or ``target``.

    Example:
      >>> import jax, jax.numpy as jnp, xaijax
      >>> from xaijax.metrics import cascading_randomization
      >>> params = {"dense": {"kernel": jnp.arange(12.0).reshape(4, 3), "bias": jnp.zeros(3)}}
      >>> apply_fn = lambda p, x: x @ p["dense"]["kernel"] + p["dense"]["bias"]
      >>> r = cascading_randomization(
      ...     xaijax.gradient(apply_fn), params, jnp.ones((2, 4)), key=jax.random.key(0)
      ... )
      >>> r.layers, r.similarity.shape
      (['dense'], (1, 2))

    References:
      Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.
    """
    e = as_explainer(explainer, "cascading_randomization")
    key = _validation.check_key(key)
    if not isinstance(params, Mapping):
        raise errors.InvalidArgumentError(
            f"`params` must be a Flax params dict (a mapping of layer names to sub-trees), got "
            f"{type(params).__name__}."
        )
    nested = list(params.keys()) == ["params"] and isinstance(params["params"], Mapping)
    tree = params["params"] if nested else params
    names = list(tree.keys())
    if layers is None:
        layers = list(reversed(names))
    else:
        if isinstance(layers, str):
            raise errors.InvalidArgumentError(
                f"`layers` must be a list of layer names, got the string {layers!r}: "
                f"pass [{layers!r}]."
            )
        layers = list(layers)
        unknown = [name for name in layers if name not in tree]
        if unknown:
            where = "`params['params']`" if nested else "`params`"
            raise errors.UnknownLayerError(
                f"`layers` names {unknown} that are not top-level keys of {where}; the layers "
                f"that exist are {names}. Pass some of those, ordered from output to input."
            )
        if len(set(layers)) != len(layers):
            raise errors.InvalidArgumentError(f"`layers` repeats a name: {layers}.")
    if not layers:
        raise errors.InvalidArgumentError("`layers` is empty: there is nothing to randomise.")

    def rebuild(sub: dict[str, Any]) -> Params:
        inner = _same_mapping_type(tree, dict(sub))  # a fresh dict per step
        return _same_mapping_type(params, {"params": inner}) if nested else inner

    def prepare(m):
        return _abs(m) if absolute else jnp.asarray(m)

    init_key, explain_key = jax.random.split(key)
    kwargs = dict(e.bound)
    if e.stochastic:
        kwargs["key"] = explain_key
    x, target, kwargs = e.prepare(params, x, target, kwargs)  # the boundary checks, once

    def explain(p, randomised: list[str]) -> Array:
        maps = e.run(p, x, target, **kwargs)
        if not _validation.all_finite(maps):
            where = f"after randomising {randomised}" if randomised else "for the original params"
            raise errors.NonFiniteOutputError(
                f"`{e.name}` produced NaN or Inf maps {where}: the model's scores (or their "
                "gradients) are not finite there. Check the model on `x` with those parameters, "
                "or leave out the layers whose re-initialisation makes it overflow."
            )
        return prepare(maps)

    reference = explain(params, [])
    current = dict(tree)
    rows = []
    for i, name in enumerate(layers):
        current[name] = _reinitialise(tree[name], init_key, i)
        maps = explain(rebuild(current), list(layers[: i + 1]))
        if maps.shape != reference.shape:
            raise errors.InputShapeError(
                f"`{e.name}` returned maps of shape {list(maps.shape)} after randomising "
                f"{name!r}, but {list(reference.shape)} for the original params."
            )
        rows.append(similarity(reference, maps))
    if all(_validation.is_concrete(r) for r in rows):  # stack on the host: no extra compile
        return RandomizationResult(
            list(layers), jnp.asarray(np.stack([np.asarray(r) for r in rows]))
        )
    return RandomizationResult(list(layers), jnp.stack(rows))


def _same_mapping_type(like: Mapping, d: dict) -> Mapping:
    if type(like) is dict:
        return d
    try:
        return type(like)(d)
    except Exception:  # noqa: BLE001 - fall back to a plain dict for exotic mappings
        return d


@jax.jit
def _abs(m: Array) -> Array:
    return jnp.abs(m)


@jax.jit
def _reinitialise(subtree: Any, key: PRNGKey, index: Array) -> Any:
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(subtree)
    leaves = [jnp.asarray(leaf) for _, leaf in leaves_with_path]
    noisy = []  # indices of the leaves that get noise
    for j, ((path, _), leaf) in enumerate(zip(leaves_with_path, leaves, strict=True)):
        last = path[-1] if path else None
        name = getattr(last, "key", getattr(last, "name", None))
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            if name == "bias":
                leaves[j] = jnp.zeros_like(leaf)
            else:
                noisy.append(j)
    # one Gaussian draw per layer, cut into the leaves (one threefry call compiles much faster)
    sizes = [leaves[j].size for j in noisy]
    z = jax.random.normal(jax.random.fold_in(key, index), (sum(sizes),), jnp.float32)
    offset = 0
    for j, size in zip(noisy, sizes, strict=True):
        leaf = leaves[j]
        x = leaf.astype(jnp.float32)
        std = jnp.std(x)
        std = jnp.where(std > 0, std, jnp.sqrt(jnp.mean(jnp.square(x))))
        leaves[j] = (std * z[offset : offset + size].reshape(leaf.shape)).astype(leaf.dtype)
        offset += size
    return jax.tree_util.tree_unflatten(treedef, leaves)
