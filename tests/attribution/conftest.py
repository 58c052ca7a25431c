"""Small models shared by the attribution tests."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest


class SmallCNN(nn.Module):
    """conv-relu-conv-relu-GAP-dense: a CAM-compatible head on a named feature layer."""

    classes: int = 3
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        act = nn.relu if self.activation == "relu" else jnp.tanh
        x = act(nn.Conv(6, (3, 3), name="conv1")(x))
        x = FeatureBlock(name="features")(x, act)
        return nn.Dense(self.classes, name="head")(jnp.mean(x, axis=(1, 2)))


class FeatureBlock(nn.Module):
    @nn.compact
    def __call__(self, x, act):
        return act(nn.Conv(8, (3, 3), name="conv")(x))


@pytest.fixture(scope="session")
def cnn():
    model = SmallCNN()
    x = jax.random.uniform(jax.random.key(1), (4, 10, 10, 3))
    params = model.init(jax.random.key(0), x)["params"]
    apply_fn = lambda p, xx: model.apply({"params": p}, xx)  # noqa: E731
    return model, params, apply_fn, x


@pytest.fixture(scope="session")
def linear():
    """A linear model ``x @ W`` on flattened inputs, whose gradient is a column of W."""
    w = jax.random.normal(jax.random.key(2), (2 * 3 * 2, 4))

    def apply_fn(p, x):
        return x.reshape(x.shape[0], -1) @ p

    x = jax.random.normal(jax.random.key(3), (5, 2, 3, 2))
    return w, apply_fn, x
