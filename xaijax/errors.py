"""Named exceptions raised at xaijax's API boundary.

Every error says what was wrong (naming the argument, its shape, dtype or value) and how to fix
it. All of them derive from :class:`XaijaxError`, and also from the built-in exception a Python
user would expect (``ValueError``, ``TypeError``, ``LookupError``), so ``except ValueError``
keeps working.

Example:
    >>> import jax.numpy as jnp
    >>> import xaijax
    >>> try:
    ...     xaijax.gradient(lambda p, x: x)(None, jnp.zeros((2, 3), jnp.int32))
    ... except xaijax.errors.InputDTypeError as e:
    ...     print(type(e).__name__)
    InputDTypeError
"""

from __future__ import annotations


class XaijaxError(Exception):
    """Base class of every error xaijax raises on purpose."""


class InputShapeError(XaijaxError, ValueError):
    """An array has the wrong rank or shape (e.g. an image batch that is not [B, H, W, C])."""


class BatchMismatchError(InputShapeError):
    """Two arguments disagree on the batch size (``x`` has B examples, ``target`` has B' != B)."""


class InputDTypeError(XaijaxError, TypeError):
    """An array has the wrong dtype (for example uint8 images where floats are needed)."""


class NonFiniteInputError(XaijaxError, ValueError):
    """An input holds NaN or Inf values."""


class NonFiniteLossError(XaijaxError, FloatingPointError):
    """The training loss became NaN or Inf; the message names the first step where it did."""


class TargetOutOfRangeError(XaijaxError, ValueError):
    """A class index in ``target`` is negative or not smaller than the number of logits."""


class UnknownLayerError(XaijaxError, LookupError):
    """A layer name does not match any layer of the model; the message lists those that exist."""


class InvalidArgumentError(XaijaxError, ValueError):
    """A hyperparameter or option is out of its domain (steps <= 0, an unknown rule name...)."""


class MissingKeyError(XaijaxError, TypeError):
    """A stochastic transform was called without its keyword-only ``key``."""


class SegmentMapError(XaijaxError, ValueError):
    """A segment map does not match its image, or holds negative, non-integer or too few labels."""


class OutputPathError(XaijaxError, OSError):
    """An output path cannot be written (its directory is missing, is a file, or is read-only)."""


class ManifestMismatchError(XaijaxError, ValueError):
    """A store's manifest (explainer, options, params, source, settings) differs from the run
    that would resume into it; resuming would mix results of two runs."""


class PeerProcessError(XaijaxError, RuntimeError):
    """Another process of a multi-process pipeline run failed (its error is in the message), so
    this process stopped too; the batches recorded so far are kept."""


class CheckpointMismatchError(XaijaxError, ValueError):
    """A checkpoint's parameter tree does not match the model it is restored into."""


class CorruptCheckpointError(XaijaxError, ValueError):
    """A checkpoint cannot be read: truncated, partly written or not a checkpoint at all."""


class InvalidKeyError(XaijaxError, TypeError):
    """A ``key`` is not one PRNG key (``jax.random.key(seed)`` or a legacy ``PRNGKey``)."""


class ModelCallError(XaijaxError, ValueError):
    """Calling the model on the given ``params`` and ``x`` failed (checked by ``eval_shape``
    before any work): params of another model, a single example without its batch axis, a
    Linen model with BatchNorm given only its ``params``..."""


class ModelOutputError(XaijaxError, ValueError):
    """The model's outputs are not what was declared: no ``[B, C]`` float scores at ``head``."""


class NonFiniteOutputError(XaijaxError, FloatingPointError):
    """An explanation came out NaN or Inf although its inputs were finite (the model's scores or
    their gradients are not finite)."""


class NotAnExplainerError(XaijaxError, TypeError):
    """A wrapper (``smooth``, ``gws``, ``multi_crop``...) was handed something that is not an
    :class:`xaijax.Explainer`; wrap a function of your own with ``xaijax.explainer``."""


class DevicesAlreadyStartedError(XaijaxError, RuntimeError):
    """``xaijax.use_cpu_devices`` was called after JAX had started its backends."""


class UnsupportedPrimitiveError(XaijaxError, NotImplementedError):
    """A jaxpr primitive has no backtracking rule; register one with ``register_rule``."""


class PaddedLayerError(XaijaxError, ValueError):
    """A convolution or pooling with padding was given to the receptive-field calculator
    (:func:`xaijax.anchornet.receptive_field`): padded layers break the exact mapping from an
    output location to one input patch; build the network with ``padding="VALID"``."""


class MissingDependencyError(XaijaxError, ImportError):
    """An optional dependency is not installed (e.g. matplotlib for :mod:`xaijax.viz` figures);
    the message names the extra to install, e.g. ``pip install 'xaijax[viz]'``."""


__all__ = [
    "BatchMismatchError",
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "DevicesAlreadyStartedError",
    "InputDTypeError",
    "InputShapeError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "ManifestMismatchError",
    "MissingDependencyError",
    "MissingKeyError",
    "ModelCallError",
    "ModelOutputError",
    "NonFiniteInputError",
    "NonFiniteLossError",
    "NonFiniteOutputError",
    "NotAnExplainerError",
    "PaddedLayerError",
    "OutputPathError",
    "SegmentMapError",
    "TargetOutOfRangeError",
    "UnknownLayerError",
    "UnsupportedPrimitiveError",
    "XaijaxError",
]
