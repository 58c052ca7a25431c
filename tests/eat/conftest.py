"""Tiny EAT models shared by the tests of xaijax.eat (32 px, a few channels)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from xaijax import eat, models

C, A = 4, 6


@pytest.fixture(scope="session")
def phi() -> np.ndarray:
    return np.array(
        [
            [1, 0, 1, 0, 1, 0],
            [0, 1, 1, 0, 0, 1],
            [1, 1, 0, 1, 0, 0],
            [0, 0, 0, 1, 1, 1],
        ],
        np.float32,
    )


@pytest.fixture(scope="session")
def backbone():
    return models.get_model("vgg", C, widths=(4, 8), convs_per_block=1)


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    return np.asarray(jax.random.uniform(jax.random.key(3), (4, 32, 32, 3)))


@pytest.fixture(scope="session")
def tiny(backbone, images):
    """``(net, params)``: parallel heads on the tiny VGG."""
    net = eat.eat_net(backbone, A)
    params = net.init(jax.random.key(0), images[:1])["params"]
    return net, params
