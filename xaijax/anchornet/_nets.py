"""AnchorNet as pure Flax Linen modules with BatchNorm (papers.md 2(b).1 and the multi-scale
inference of 2(b)).

Every convolution is unpadded (``"VALID"``), so output location ``(i, j)`` of a branch sees
exactly the input box ``[i J, i J + RF - 1]`` (rows and columns; papers.md 1.7), and the logits
are a linear spatial aggregation: per branch ``b`` a feature map ``F_b [B, h_b, w_b, K]``,
``logits = sum_b (mean_{ij} F_b(i, j)) W_b + bias_b``.

Call ``module.apply(variables, x, train=False)`` for logits ``[B, C]``, and with
``features_only=True`` for the tuple of branch feature maps (what
:func:`~xaijax.anchornet.contributions` reads). ``module.layers()`` gives each branch's
``[(kernel, stride), ...]`` chain for :func:`~xaijax.anchornet.receptive_field`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from xaijax import _validation, errors
from xaijax.anchornet import _rf

#: The code's blocks ``(kernel, expand, out, stride)`` (``in`` is the previous ``out``).
CODE_BLOCKS: tuple[tuple[int, float, int, int], ...] = (
    (3, 1, 16, 2),
    (3, 3, 24, 2),
    (3, 4, 24, 1),
    (3, 4, 48, 1),
    (3, 2, 96, 1),
    (3, 1.5, 96, 1),
    (3, 1.5, 96, 1),
)
CROPS = ("bottom_right", "centred")

_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # Kaiming fan_out
_fc_init = nn.initializers.normal(0.001)


def _bn(train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class MBConv(nn.Module):
    """A no-padding MBConv block: 1x1 expand (skipped when ``expand == 1``) + BN + swish,
    depthwise ``kernel`` conv (stride ``stride``, VALID) + BN + swish, optional
    Squeeze-Excitation, 1x1 project + BN; residual when ``stride == 1`` and the widths agree,
    the skip tensor cropped (``"bottom_right"`` as the code, or ``"centred"``)."""

    kernel: int
    expand: float
    out: int
    stride: int
    se: bool = True
    crop: str = "bottom_right"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        cin = x.shape[-1]
        hidden = int(round(cin * self.expand))
        h = x
        if self.expand != 1:
            h = nn.Conv(hidden, (1, 1), use_bias=False, kernel_init=_conv_init, name="expand")(h)
            h = nn.swish(_bn(train, "bn0")(h))
        k = (self.kernel,) * (x.ndim - 2)
        h = nn.Conv(
            h.shape[-1],
            k,
            strides=self.stride,
            padding="VALID",
            feature_group_count=h.shape[-1],
            use_bias=False,
            kernel_init=_conv_init,
            name="depthwise",
        )(h)
        h = nn.swish(_bn(train, "bn1")(h))
        if self.se:
            axes = tuple(range(1, h.ndim - 1))
            s = jnp.mean(h, axis=axes, keepdims=True)
            s = nn.swish(nn.Conv(max(1, int(cin * 0.25)), (1,) * len(axes), name="se_reduce")(s))
            s = nn.sigmoid(nn.Conv(h.shape[-1], (1,) * len(axes), name="se_expand")(s))
            h = h * s
        h = nn.Conv(
            self.out, (1,) * (x.ndim - 2), use_bias=False, kernel_init=_conv_init, name="project"
        )(h)
        h = _bn(train, "bn2")(h)
        if self.stride == 1 and cin == self.out:
            diff = x.shape[1] - h.shape[1]
            lo = 0 if self.crop == "bottom_right" else diff // 2
            idx = (slice(None),) + tuple(slice(lo, lo + h.shape[a]) for a in range(1, x.ndim - 1))
            h = h + x[idx]
        return h


def _check_blocks(blocks, what: str):
    for blk in blocks:
        if len(blk) != 4 or int(blk[0]) < 1 or int(blk[3]) < 1 or int(blk[2]) < 1:
            raise errors.InvalidArgumentError(
                f"`{what}` entry {blk!r} must be (kernel, expand, out, stride) with positive "
                "kernel, out and stride."
            )
        _validation.check_positive_number(blk[1], f"{what} entry {blk!r}: expand")


def _check_sizes(**sizes) -> None:
    """Every keyword a positive Python int (the modules' widths and class counts)."""
    for name, value in sizes.items():
        _validation.check_positive_int(value, name)


class AnchorNet(nn.Module):
    """AnchorNet (papers.md 2(b).1): a no-padding stem shared by one or more branches, each
    ending in ``exp_conv`` (1x1 to ``features``), a global average and its own ``fc``; the
    branch logits are summed.

    With the defaults (``stem_blocks=CODE_BLOCKS``, one branch without blocks) it is the
    code's single-branch network: RF 95, jump 8, 17x17 locations at 224 px. Layers:
    ``conv1``/``bn1``, ``block1 .. blockN`` (stem), ``branch{b}/block{k}``,
    ``branch{b}/exp_conv``, ``branch{b}/fc`` (``b`` from 1).

    Attributes:
      num_classes: number of logits.
      stem_width: channels of ``conv1`` (3x3, stride 2).
      stem_blocks: the stem's MBConv blocks ``(kernel, expand, out, stride)``.
      branches: per branch, its own MBConv blocks after the stem.
      features: channels of each branch's ``exp_conv``.
      se: Squeeze-Excitation in every block (the code); ``False`` makes every location's
        feature a function of its box alone.
      crop: ``"bottom_right"`` (the code) or ``"centred"`` residual crop.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax import anchornet
      >>> net = anchornet.anchornet(10, widths=(4, 4, 4, 4, 4, 4, 4), stem_width=4, features=8)
      >>> v = net.init(jax.random.key(0), jnp.zeros((1, 95, 95, 3)))
      >>> net.apply(v, jnp.zeros((2, 103, 103, 3))).shape
      (2, 10)
    """

    num_classes: int
    stem_width: int = 16
    stem_blocks: tuple[tuple[int, float, int, int], ...] = CODE_BLOCKS
    branches: tuple[tuple[tuple[int, float, int, int], ...], ...] = ((),)
    features: int = 512
    se: bool = True
    crop: str = "bottom_right"

    def __post_init__(self) -> None:
        # hyperparameters are checked when the module is built, before any init or apply
        _check_sizes(
            num_classes=self.num_classes, stem_width=self.stem_width, features=self.features
        )
        _validation.check_choice(self.crop, "crop", CROPS)
        if not self.branches:
            raise errors.InvalidArgumentError("`branches` is empty: give at least one branch.")
        _check_blocks(self.stem_blocks, "stem_blocks")
        for br in self.branches:
            _check_blocks(br, "branches")
        super().__post_init__()

    def layers(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """Each branch's chain ``((kernel, stride), ...)`` from the input to its features."""
        stem = ((3, 2),) + tuple((int(b[0]), int(b[3])) for b in self.stem_blocks)
        return tuple(stem + tuple((int(b[0]), int(b[3])) for b in br) for br in self.branches)

    def receptive_fields(self, input_size=None) -> tuple[_rf.ReceptiveField, ...]:
        """One :class:`~xaijax.anchornet.ReceptiveField` per branch."""
        return tuple(_rf.from_layers(chain, input_size) for chain in self.layers())

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False):
        if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
            raise errors.InputShapeError(
                f"AnchorNet expects float images [B, H, W, C], got {x.dtype}{list(x.shape)}."
            )
        for rf in self.receptive_fields():
            if min(x.shape[1:3]) < rf.rf[0]:
                raise errors.InputShapeError(
                    f"Images of {x.shape[1]}x{x.shape[2]} px are smaller than a branch's "
                    f"receptive field ({rf.rf[0]} px): no location fits. Resize the images to at "
                    f"least {rf.rf[0]} px."
                )
        h = nn.Conv(
            self.stem_width,
            (3, 3),
            strides=2,
            padding="VALID",
            use_bias=False,
            kernel_init=_conv_init,
            name="conv1",
        )(x)
        h = nn.swish(_bn(train, "bn1")(h))
        for i, (k, e, o, s) in enumerate(self.stem_blocks):
            h = MBConv(int(k), e, int(o), int(s), self.se, self.crop, name=f"block{i + 1}")(
                h, train
            )
        feats, logits = [], 0.0
        for b, br in enumerate(self.branches):
            f, lg = _Branch(
                br, self.features, self.num_classes, self.se, self.crop, name=f"branch{b + 1}"
            )(h, train, features_only)
            feats.append(f)
            logits = logits + lg if lg is not None else logits
        return tuple(feats) if features_only else logits


class _Branch(nn.Module):
    blocks: tuple
    features: int
    num_classes: int
    se: bool
    crop: str

    @nn.compact
    def __call__(self, h, train: bool, features_only: bool):
        for i, (k, e, o, s) in enumerate(self.blocks):
            h = MBConv(int(k), e, int(o), int(s), self.se, self.crop, name=f"block{i + 1}")(
                h, train
            )
        f = nn.Conv(self.features, (1,) * (h.ndim - 2), kernel_init=_conv_init, name="exp_conv")(h)
        if features_only and not self.is_initializing():
            return f, None
        pooled = jnp.mean(f, axis=tuple(range(1, f.ndim - 1)))
        return f, nn.Dense(self.num_classes, kernel_init=_fc_init, name="fc")(pooled)


class AnchorNetText(nn.Module):
    """The 1-D AnchorNet over token embeddings: ``embed`` then, per branch, unpadded 1-D convs
    (+ BN + swish) whose receptive field is the branch's n-gram length, ``exp_conv`` (1x1 to
    ``features``), a mean over positions and the branch's ``fc``; branch logits summed.

    Attributes:
      num_classes: number of logits.
      vocab_size / embed_dim: the embedding.
      branches: per branch, its convolutions' kernel sizes (stride 1): RF = 1 + sum(k - 1).
      width: channels of each convolution.
      features: channels of ``exp_conv``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax import anchornet
      >>> net = anchornet.anchornet_text(2, vocab_size=20, rfs=(3, 5), width=4, features=4)
      >>> v = net.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
      >>> net.apply(v, jnp.zeros((3, 8), jnp.int32)).shape
      (3, 2)
    """

    num_classes: int
    vocab_size: int = 1000
    embed_dim: int = 32
    branches: tuple[tuple[int, ...], ...] = ((3,), (3, 3), (3, 3, 3))
    width: int = 64
    features: int = 64

    def __post_init__(self) -> None:
        _check_sizes(
            num_classes=self.num_classes,
            vocab_size=self.vocab_size,
            embed_dim=self.embed_dim,
            width=self.width,
            features=self.features,
        )
        if not self.branches:
            raise errors.InvalidArgumentError("`branches` is empty: give at least one branch.")
        for br in self.branches:
            for k in br:
                _validation.check_positive_int(k, "branches: kernel size")
        super().__post_init__()

    def layers(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        return tuple(tuple((int(k), 1) for k in br) for br in self.branches)

    def receptive_fields(self, input_size=None) -> tuple[_rf.ReceptiveField, ...]:
        return tuple(_rf.from_layers(chain, input_size) for chain in self.layers())

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False, features_only: bool = False):
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise errors.InputShapeError(
                f"AnchorNetText expects int token ids [B, L], got {tokens.dtype}"
                f"{list(tokens.shape)}."
            )
        for rf in self.receptive_fields():
            if tokens.shape[1] < rf.rf[0]:
                raise errors.InputShapeError(
                    f"Sequences of {tokens.shape[1]} tokens are shorter than a branch's receptive "
                    f"field ({rf.rf[0]} tokens): pad them to at least {rf.rf[0]}."
                )
        e = nn.Embed(self.vocab_size, self.embed_dim, name="embed")(tokens)
        feats, logits = [], 0.0
        for b, br in enumerate(self.branches):
            h = e
            for i, k in enumerate(br):
                h = nn.Conv(
                    self.width,
                    (int(k),),
                    padding="VALID",
                    use_bias=False,
                    kernel_init=_conv_init,
                    name=f"branch{b + 1}_conv{i + 1}",
                )(h)
                h = nn.swish(_bn(train, f"branch{b + 1}_bn{i + 1}")(h))
            f = nn.Conv(
                self.features, (1,), kernel_init=_conv_init, name=f"branch{b + 1}_exp_conv"
            )(h)
            feats.append(f)
            if not features_only or self.is_initializing():
                logits = logits + nn.Dense(
                    self.num_classes, kernel_init=_fc_init, name=f"branch{b + 1}_fc"
                )(jnp.mean(f, axis=1))
        return tuple(feats) if features_only else logits


# --- constructors -------------------------------------------------------------------------------


def anchornet(
    num_classes: int,
    *,
    widths: Sequence[int] | None = None,
    stem_width: int = 16,
    features: int = 512,
    se: bool = True,
    crop: str = "bottom_right",
) -> AnchorNet:
    """The code's single-branch AnchorNet (RF 95, jump 8); ``widths`` replaces the seven
    blocks' output channels (tests use tiny ones)."""
    _check_sizes(num_classes=num_classes, stem_width=stem_width, features=features)
    _validation.check_choice(crop, "crop", CROPS)
    blocks = CODE_BLOCKS
    if widths is not None:
        for w in widths:
            _validation.check_positive_int(w, "widths entry")
        if len(widths) != len(CODE_BLOCKS):
            raise errors.InvalidArgumentError(
                f"`widths` needs {len(CODE_BLOCKS)} entries (one per block), got {len(widths)}."
            )
        blocks = tuple(
            (k, e, int(w), s) for (k, e, _, s), w in zip(CODE_BLOCKS, widths, strict=True)
        )
    return AnchorNet(num_classes, stem_width, blocks, ((),), features, se, crop)


def anchornet_multi(
    num_classes: int,
    *,
    rfs: Sequence[int] = (23, 39, 55),
    width: int = 24,
    stem_width: int = 16,
    features: int = 128,
    expand: float = 2.0,
    se: bool = False,
    crop: str = "bottom_right",
) -> AnchorNet:
    """A multi-branch AnchorNet with chosen receptive fields (papers.md 2(b), 2(g)).

    Stem: ``conv1`` 3x3/2 and one 3x3/2 block (RF 7, jump 4); each branch adds 3x3 stride-1
    blocks, each adding 8 px, so a branch RF must be ``7 + 8 n`` (15, 23, 31, 39, 47, 55, ...).
    """
    _check_sizes(num_classes=num_classes, width=width, stem_width=stem_width, features=features)
    _validation.check_positive_number(expand, "expand")
    _validation.check_choice(crop, "crop", CROPS)
    rfs = tuple(int(r) for r in rfs)
    if not rfs or any(r < 7 or (r - 7) % 8 for r in rfs):
        raise errors.InvalidArgumentError(
            f"`rfs` {rfs} must be non-empty receptive fields of the form 7 + 8 n (the stem's RF "
            "is 7 px at jump 4 and each branch block adds 8 px): e.g. (23, 39, 55)."
        )
    stem = ((3, 1, width, 2),)
    branches = tuple(((3, expand, width, 1),) * ((r - 7) // 8) for r in rfs)
    return AnchorNet(num_classes, stem_width, stem, branches, features, se, crop)


def anchornet_text(
    num_classes: int,
    *,
    vocab_size: int = 1000,
    rfs: Sequence[int] = (3, 5, 7),
    embed_dim: int = 32,
    width: int = 64,
    features: int = 64,
) -> AnchorNetText:
    """A 1-D AnchorNet with branch receptive fields ``rfs`` in tokens (kernel-3 convolutions,
    one kernel-2 convolution for an even RF; RF 1 is a unigram branch)."""
    _check_sizes(
        num_classes=num_classes,
        vocab_size=vocab_size,
        embed_dim=embed_dim,
        width=width,
        features=features,
    )
    rfs = tuple(int(r) for r in rfs)
    if not rfs or min(rfs) < 1:
        raise errors.InvalidArgumentError(
            f"`rfs` {rfs} must be non-empty positive receptive fields in tokens, e.g. (3, 5, 7)."
        )
    branches = tuple((3,) * ((r - 1) // 2) + ((2,) if (r - 1) % 2 else ()) for r in rfs)
    return AnchorNetText(num_classes, vocab_size, embed_dim, branches, width, features)
