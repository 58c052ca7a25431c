"""Static checks of EAT's inputs: the class-attribute matrix, ``m`` and attribute names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xaijax import errors
from xaijax._validation import _shape_str


def class_attribute(
    phi, *, num_classes: int | None = None, num_attributes: int | None = None
) -> np.ndarray:
    """``phi`` as a finite float ``[C, A]`` NumPy array whose shape matches the heads.

    Raises:
      InputShapeError: ``phi`` is not 2-D, or its ``C`` / ``A`` differ from the model's.
      InvalidArgumentError: ``phi`` holds NaN/Inf or is not numeric.
    """
    try:
        arr = np.asarray(phi, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise errors.InvalidArgumentError(
            f"`class_attribute` must be a numeric [C, A] matrix (one row of attribute values per "
            f"class), got {type(phi).__name__}."
        ) from e
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise errors.InputShapeError(
            f"`class_attribute` must be a [C, A] matrix (one row per class, one column per "
            f"attribute), got shape {_shape_str(arr.shape)}: e.g. "
            "`xaijax.data.synthetic.class_attribute_matrix(config)`."
        )
    if num_classes is not None and arr.shape[0] != num_classes:
        raise errors.InputShapeError(
            f"`class_attribute` has {arr.shape[0]} rows but the class head has {num_classes} "
            f"classes: pass the [C, A] = [{num_classes}, A] matrix of this model's classes."
        )
    if num_attributes is not None and arr.shape[1] != num_attributes:
        raise errors.InputShapeError(
            f"`class_attribute` has {arr.shape[1]} columns but the attribute head has "
            f"{num_attributes} attributes: pass the [C, A] = [C, {num_attributes}] matrix whose "
            "columns are this model's attributes."
        )
    if not np.all(np.isfinite(arr)):
        raise errors.InvalidArgumentError(
            "`class_attribute` holds NaN or Inf values: give finite attribute values per class."
        )
    return arr


def m_value(m, name: str = "m") -> int:
    """``m`` (how many attributes a sentence names) as a positive int."""
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        raise errors.InvalidArgumentError(
            f"`{name}` must be an integer >= 1 (how many attributes a sentence names), got "
            f"{m!r}: use m=3 (the default) or any count up to the number of attributes."
        )
    return int(m)


def attribute_names(names: Sequence[str], num_attributes: int) -> tuple[str, ...]:
    """``names`` as a tuple of ``num_attributes`` strings."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise errors.InvalidArgumentError(
            f"`attribute_names` must be a sequence of strings, one per attribute, got "
            f"{type(names).__name__}: e.g. `xaijax.data.synthetic.ATTRIBUTE_NAMES`."
        )
    names = tuple(names)
    if len(names) != num_attributes:
        raise errors.InvalidArgumentError(
            f"`attribute_names` has {len(names)} names but the class-attribute matrix has "
            f"{num_attributes} attribute columns: give one name per column, in column order "
            "(the benchmark's are `xaijax.data.synthetic.ATTRIBUTE_NAMES`)."
        )
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise errors.InvalidArgumentError(
            f"`attribute_names` must hold strings, got {type(bad[0]).__name__} {bad[0]!r}."
        )
    return names
