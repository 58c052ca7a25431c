"""Per-location contributions of an AnchorNet: every logit as an exact sum (papers.md 2(b).3).

Branch ``b`` with features ``F_b [h_b, w_b, K]`` and head ``(W_b, bias_b)`` contributes
``F_b(i, j) W_b / (h_b w_b)`` at location ``(i, j)``; the logits are the sum over branches and
locations plus ``sum_b bias_b``, exactly (up to the order of floating-point additions).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from xaijax import _model, errors
from xaijax._explainer import Explainer, options
from xaijax.anchornet._nets import AnchorNet, AnchorNetText
from xaijax.typing import Array


class Contributions(NamedTuple):
    """What :func:`contributions` returns for a batch (images ``[B, H, W, C]``; for token ids
    ``[B, L]`` drop one spatial axis everywhere).

    Branches with fewer locations than the first are padded at the end with zeros (``valid``
    False), so every field has one ``h x w`` grid.

    Attributes:
      map: ``[B, H, W]`` the explained class's pixel map summed over branches.
      pixel_maps: ``[B, branch, H, W]`` per branch: each location's contribution spread over
        its RF box, **averaged** where boxes overlap (a pixel's value is the mean of the
        contributions of the locations whose boxes contain it; 0 where no box reaches, i.e.
        the last ``(H - RF) mod jump`` rows and columns).
      location_map: ``[B, branch, h, w]`` the explained class's contributions.
      contributions: ``[B, branch, h, w, C]`` every class's contributions: ``logits[b, c] ==
        contributions[b, ..., c].sum() + bias[b, c]``.
      bias: ``[B, C]`` the summed branch biases.
      valid: ``[B, branch, h, w]`` which locations exist in their branch.
      target: ``[B]`` the explained class.
    """

    map: Array
    pixel_maps: Array
    location_map: Array
    contributions: Array
    bias: Array
    valid: Array
    target: Array


def _coverage(n_in: int, n_out: int, rf: int, jump: int, offset: int, dtype) -> Array:
    """``A [n_in, n_out]``: 1 where input element ``y`` is inside location ``i``'s box."""
    y = jnp.arange(n_in)[:, None]
    start = offset + jump * jnp.arange(n_out)[None, :]
    return ((y >= start) & (y <= start + rf - 1)).astype(dtype)


def _pad_to(a: Array, sizes: tuple[int, ...]) -> Array:
    pads = [(0, 0)] + [(0, s - n) for s, n in zip(sizes, a.shape[1 : 1 + len(sizes)], strict=True)]
    pads += [(0, 0)] * (a.ndim - len(pads))
    return jnp.pad(a, pads)


def contributions(net: AnchorNet | AnchorNetText) -> Explainer:
    """Per-location contributions of an AnchorNet, as an :class:`~xaijax.Explainer`.

    Call it as ``explain(variables, x, target=None)`` with the whole variables dict
    (``{"params": ..., "batch_stats": ...}``); the network runs in inference mode.

    Args:
      net: an :class:`AnchorNet` (images) or :class:`AnchorNetText` (token ids).

    Returns:
      An explainer returning :class:`Contributions` (result kind ``"contributions"``).

    Raises:
      InputShapeError: inputs smaller than a branch's receptive field (at call time).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax import anchornet
      >>> net = anchornet.anchornet_multi(3, rfs=(15, 23), width=4, stem_width=4, features=4)
      >>> v = net.init(jax.random.key(0), jnp.zeros((1, 31, 31, 3)))
      >>> out = anchornet.contributions(net)(v, jnp.ones((2, 31, 31, 3)))
      >>> out.contributions.shape, out.map.shape
      ((2, 2, 5, 5, 3), (2, 31, 31))

    References:
      papers.md 2(b).3 (the code's CAM, ``logit = (K / (h w)) sum cam + b``).
    """
    if not isinstance(net, AnchorNet | AnchorNetText):
        raise errors.InvalidArgumentError(
            "`contributions` needs an xaijax.anchornet AnchorNet or AnchorNetText module, got "
            f"{type(net).__name__}."
        )
    text = isinstance(net, AnchorNetText)
    m = _model.from_linen(net, train=False)
    rfs = net.receptive_fields()
    prefix = (lambda b: f"branch{b + 1}_fc") if text else (lambda b: ("branch" + str(b + 1), "fc"))

    def head(params, b):
        p = params["params"]
        key = prefix(b)
        node = p[key] if text else p[key[0]][key[1]]
        return node["kernel"], node["bias"]

    def run(params: Any, x: Array, target: Array | None) -> Contributions:
        feats = net.apply(_model._variables(params), x, train=False, features_only=True)
        grid = tuple(feats[0].shape[1:-1])
        per, valid, pix = [], [], []
        bias = 0.0
        space = tuple(x.shape[1:-1]) if not text else (x.shape[1],)
        for b, f in enumerate(feats):
            w, bb = head(params, b)
            n = 1
            for s in f.shape[1:-1]:
                n *= s
            c = jnp.einsum("...k,kc->...c", f, w.astype(f.dtype)) / n
            per.append(_pad_to(c, grid))
            valid.append(_pad_to(jnp.ones(f.shape[:-1], bool), grid))
            bias = bias + bb
            pix.append(c)
        contrib = jnp.stack(per, axis=1)
        logits = jnp.sum(contrib, axis=tuple(range(1, contrib.ndim - 1))) + bias[None]
        tgt = target if target is not None else jnp.argmax(logits, axis=-1).astype(jnp.int32)
        loc = jnp.take_along_axis(contrib, tgt.reshape((-1,) + (1,) * (contrib.ndim - 1)), -1)
        loc = loc[..., 0]
        maps = []
        for b, c in enumerate(pix):
            cm = jnp.take_along_axis(c, tgt.reshape((-1,) + (1,) * (c.ndim - 1)), -1)[..., 0]
            rf = rfs[b]
            mats = [
                _coverage(space[a], c.shape[1 + a], rf.rf[0], rf.jump[0], rf.offset[0], c.dtype)
                for a in range(len(space))
            ]
            if text:
                total = jnp.einsum("yi,bi->by", mats[0], cm)
                count = mats[0].sum(1)[None]
            else:
                total = jnp.einsum("yi,bij,xj->byx", mats[0], cm, mats[1])
                count = jnp.outer(mats[0].sum(1), mats[1].sum(1))[None]
            maps.append(jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0))
        pixel_maps = jnp.stack(maps, axis=1)
        batch = x.shape[0]
        return Contributions(
            map=pixel_maps.sum(1),
            pixel_maps=pixel_maps,
            location_map=loc,
            contributions=contrib,
            bias=jnp.broadcast_to(bias, (batch,) + bias.shape),
            valid=jnp.broadcast_to(jnp.stack(valid, 1), loc.shape),
            target=tgt,
        )

    def check(params, x, target, kwargs):
        size = x.shape[1:-1] if not text else x.shape[1:]
        for b, rf in enumerate(rfs):
            if min(size) < rf.rf[0]:
                raise errors.InputShapeError(
                    f"`x` of spatial size {tuple(size)} is smaller than branch {b + 1}'s "
                    f"receptive field ({rf.rf[0]}): no location fits. Give inputs of at least "
                    f"{rf.rf[0]} {'tokens' if text else 'px'}."
                )
        return x, target, kwargs

    return Explainer(
        name="anchornet_contributions",
        model=m,
        run=jax.jit(run),  # one compile per shape, not one per operation in eager calls
        result="contributions",
        options=options(rfs=tuple(r.rf[0] for r in rfs)),
        integer_inputs=text,
        check=check,
    )
