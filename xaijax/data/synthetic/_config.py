"""Configurations of the three synthetic generators (frozen, hashable, checked on creation)."""

from __future__ import annotations

import dataclasses
import math

from xaijax import errors

#: Smallest image side for :class:`ImageConfig` (parts of a minimum-scale object stay a few
#: pixels wide) and for :class:`VideoConfig`.
MIN_IMAGE_SIZE = 24
MIN_VIDEO_SIZE = 16


def _int(value, name: str, lo: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise errors.InvalidArgumentError(
            f"`{name}` must be an integer >= {lo}, got {value!r}.{' ' + hint if hint else ''}"
        )
    return value


def _prob(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise errors.InvalidArgumentError(
            f"`{name}` must be a probability in [0, 1], got {value!r}."
        )
    return float(value)


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """Options of :func:`make_images` (synthetic benchmark; see the package docstring).

    Attributes:
      image_size: side ``S`` of the square RGB images (>= 24).
      num_classes: number of classes ``C``; each is a row of :func:`class_attribute_matrix`.
      num_distractors: distractor shapes per image, drawn behind the object in muted colours
        that no part uses, independently of the label.
      scale_range: ``(lo, hi)`` range of the object's diameter (the diameter of the circle that
        holds every possible pose) as a fraction of the image side (of half the side with
        ``two_objects``). The default ``(0.75, 1.0)`` makes the object cover about 15-40% of
        the image.
      scale_choices: if given, a tuple of such fractions; each object's scale is drawn
        uniformly from these values instead of ``scale_range`` (which is then unused), and the
        output gains ``size_class`` (the index into ``scale_choices``). Discrete sizes make
        the needle benchmark (:func:`needle_config`). None (the default) leaves every output
        as without the option.
      max_rotation: object rotations are uniform in ``[-max_rotation, max_rotation]`` degrees.
      spurious_background: if True, the background pattern (tint and grating orientation) of a
        *train* example is the one of its class with probability ``spurious_strength``;
        validation and test backgrounds stay independent of the label.
      spurious_strength: see ``spurious_background``.
      missing_part_prob: probability that each non-body part is left out (independently).
      two_objects: if True, draw a second object of a different class in the other half of the
        image (outputs ``label2``, ``object_mask2``, ``box2``).
      class_seed: seed of the class-attribute matrix (fixed by default, shared by all splits).
    """

    image_size: int = 64
    num_classes: int = 10
    num_distractors: int = 3
    scale_range: tuple[float, float] = (0.75, 1.0)
    scale_choices: tuple[float, ...] | None = None
    max_rotation: float = 180.0
    spurious_background: bool = False
    spurious_strength: float = 1.0
    missing_part_prob: float = 0.0
    two_objects: bool = False
    class_seed: int = 0

    def __post_init__(self):
        _int(
            self.image_size,
            "image_size",
            MIN_IMAGE_SIZE,
            "Smaller images cannot hold the object's parts; render larger and downsample.",
        )
        _int(self.num_classes, "num_classes", 2)
        _int(self.num_distractors, "num_distractors", 0)
        _int(self.class_seed, "class_seed", 0)
        sr = self.scale_range
        ok = (
            isinstance(sr, tuple | list)
            and len(sr) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in sr)
            and 0.0 < sr[0] <= sr[1] <= 1.0
        )
        if not ok:
            raise errors.InvalidArgumentError(
                f"`scale_range` must be a pair (lo, hi) with 0 < lo <= hi <= 1 (object diameter "
                f"as a fraction of the image side), got {sr!r}."
            )
        object.__setattr__(self, "scale_range", (float(sr[0]), float(sr[1])))
        side = self.image_size / (2 if self.two_objects else 1)
        if sr[0] * side < 12:
            raise errors.InvalidArgumentError(
                f"`scale_range` lower bound {sr[0]} gives objects {sr[0] * side:.1f} px wide on "
                f"`image_size`={self.image_size}{' (two objects)' if self.two_objects else ''}; "
                "objects need >= 12 px: raise `scale_range[0]` or `image_size`."
            )
        if self.scale_choices is not None:
            sc = self.scale_choices
            ok = (
                isinstance(sc, tuple | list)
                and len(sc) >= 1
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in sc)
                and all(0.0 < v <= 1.0 for v in sc)
            )
            if not ok:
                raise errors.InvalidArgumentError(
                    f"`scale_choices` must be a non-empty tuple of object diameters in (0, 1] "
                    f"(fractions of the image side), got {sc!r}."
                )
            object.__setattr__(self, "scale_choices", tuple(float(v) for v in sc))
            if min(sc) * side < 12:
                raise errors.InvalidArgumentError(
                    f"`scale_choices` value {min(sc)} gives objects {min(sc) * side:.1f} px wide "
                    f"on `image_size`={self.image_size}"
                    f"{' (two objects)' if self.two_objects else ''}; objects need >= 12 px: "
                    "raise the smallest choice or `image_size`."
                )
        rot = self.max_rotation
        if isinstance(rot, bool) or not isinstance(rot, int | float) or not 0 <= rot <= 180:
            raise errors.InvalidArgumentError(
                f"`max_rotation` must be in [0, 180] degrees, got {rot!r}."
            )
        _prob(self.spurious_strength, "spurious_strength")
        _prob(self.missing_part_prob, "missing_part_prob")


def needle_config(
    image_size: int = 96,
    *,
    num_classes: int = 10,
    num_distractors: int = 12,
    scale_choices: tuple[float, ...] = (0.25, 0.4, 0.6),
    class_seed: int = 0,
) -> ImageConfig:
    """The "needle" benchmark of papers.md 2(g): one object of three discrete sizes at a random
    position and rotation in clutter (distractor shapes), for multi-scale localisation.

    With the defaults (96 px) the objects' circles are 23.5, 37.6 and 56.4 px across and their
    tight boxes (``box`` of :func:`make_images`, the ground truth) about 20, 33 and 48 px
    (medians; ``size_class`` 0, 1, 2), sized for AnchorNet branches of receptive field 23, 39
    and 55 px (papers.md 2(g)); the distractors are 10-17 px wide.

    Args:
      image_size: image side (96 or 128 in papers.md 2(g); >= 24).
      num_classes: number of classes.
      num_distractors: clutter shapes per image.
      scale_choices: the object diameters as fractions of the side (each >= 12 px).
      class_seed: seed of the class-attribute matrix.

    Returns:
      An :class:`ImageConfig`.

    >>> from xaijax.data import synthetic
    >>> d = synthetic.make_images(4, config=synthetic.needle_config())
    >>> d["image"].shape, d["size_class"].dtype
    ((4, 96, 96, 3), dtype('int32'))
    """
    return ImageConfig(
        image_size=image_size,
        num_classes=num_classes,
        num_distractors=num_distractors,
        scale_choices=tuple(scale_choices),
        class_seed=class_seed,
    )


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    """Options of :func:`make_videos`.

    Attributes:
      num_frames: frames ``T`` per clip (>= 4).
      image_size: side ``S`` of each square RGB frame (>= 16).
      num_classes: number of motion classes, the first ``num_classes`` of
        :data:`MOTION_NAMES` (2 to 10).
      num_distractors: static distractor shapes per clip.
    """

    num_frames: int = 16
    image_size: int = 32
    num_classes: int = 10
    num_distractors: int = 2

    def __post_init__(self):
        from xaijax.data.synthetic._videos import MOTION_NAMES

        _int(self.num_frames, "num_frames", 4, "Motion needs a few frames to be visible.")
        _int(self.image_size, "image_size", MIN_VIDEO_SIZE, "The moving object needs room.")
        _int(self.num_classes, "num_classes", 2)
        if self.num_classes > len(MOTION_NAMES):
            raise errors.InvalidArgumentError(
                f"`num_classes` must be <= {len(MOTION_NAMES)} (the motions {list(MOTION_NAMES)}"
                f"), got {self.num_classes}."
            )
        _int(self.num_distractors, "num_distractors", 0)


def key_pool_size(ngram_size: int, num_classes: int) -> int:
    """Tokens in the shared pool the key n-grams are drawn from (>= 2n, >= 2C orderings)."""
    pool = 2 * ngram_size
    while math.perm(pool, ngram_size) < 2 * num_classes:
        pool += 1
    return pool


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Options of :func:`make_texts`.

    Attributes:
      seq_len: tokens ``L`` per sequence.
      vocab_size: vocabulary ``V``; id 0 is padding and 1 is unknown (both unused here, kept
        for compatibility with :mod:`xaijax.data.tfds` text), distractors are uniform on
        ``[2, V)``.
      num_classes: number of classes, one key n-gram each.
      ngram_size: length ``n`` of the key n-grams (e.g. 2, 3 or 5).
      class_seed: seed of the key n-grams (fixed by default, shared by all splits).
    """

    seq_len: int = 64
    vocab_size: int = 200
    num_classes: int = 10
    ngram_size: int = 3
    class_seed: int = 0

    def __post_init__(self):
        _int(self.num_classes, "num_classes", 2)
        _int(self.ngram_size, "ngram_size", 1)
        _int(self.class_seed, "class_seed", 0)
        _int(
            self.seq_len,
            "seq_len",
            2 * self.ngram_size,
            "The sequence must hold the key n-gram and at least as many distractor tokens.",
        )
        _int(self.vocab_size, "vocab_size", 16)
        if key_pool_size(self.ngram_size, self.num_classes) > (self.vocab_size - 2) // 2:
            raise errors.InvalidArgumentError(
                f"`vocab_size`={self.vocab_size} is too small for {self.num_classes} distinct key "
                f"{self.ngram_size}-grams: raise `vocab_size`."
            )
