"""Textual explanations on hand-made scores: ties, m > A, nothing present, counter-evidence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import eat, errors
from xaijax.data import synthetic

BIG = 20.0  # sigmoid(20) = 1 - 2e-9
NAMES = ["head_color::red", "body_texture::striped", "tail_size::large", "wings_shape::disc"]


def test_relevance_is_sigmoid_times_phi_row():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 4)).astype(np.float32)
    phi = rng.random((5, 4)).astype(np.float32)
    t = np.array([4, 0, 2])
    want = 1 / (1 + np.exp(-a)) * phi[t]
    np.testing.assert_allclose(eat.relevance(a, phi, t), want, rtol=1e-6)


def test_top_m_order_and_ties_lower_index_first():
    phi = jnp.ones((1, 4))
    a = jnp.array([[0.0, BIG, 0.0, BIG]])  # ties 1 == 3 and 0 == 2
    e = eat.select_attributes(a, phi, jnp.array([0]), m=4)
    assert e.indices.tolist() == [[1, 3, 0, 2]]
    assert e.named.tolist() == [[True, True, True, True]]  # sigmoid(0) = 0.5 >= 0.5
    text = eat.sentences(e, NAMES)
    assert text == [
        "This is class 0 because of its striped body, disc-shaped wings, red head and large tail."
    ]


def test_phi_selects_class_characteristic_attributes():
    phi = jnp.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    a = jnp.full((2, 4), BIG)  # everything predicted present
    e = eat.select_attributes(a, phi, jnp.array([0, 1]), m=3)
    assert e.indices[:, :2].tolist() == [[0, 2], [1, 3]]
    assert e.named.tolist() == [[True, True, False], [True, True, False]]
    assert eat.sentences(e, NAMES, ["cat", "dog"]) == [
        "This is cat because of its red head and large tail.",
        "This is dog because of its striped body and disc-shaped wings.",
    ]


def test_m_larger_than_number_of_attributes_is_clipped():
    e = eat.select_attributes(jnp.full((2, 4), BIG), jnp.ones((1, 4)), jnp.array([0, 0]), m=10)
    assert e.indices.shape == (2, 4) and e.named.all()
    assert sorted(e.indices[0].tolist()) == [0, 1, 2, 3]


def test_no_attribute_present_and_counter_evidence():
    phi = jnp.array([[1.0, 1.0, 0.0, 0.0]])
    a = jnp.array([[-BIG, -BIG, BIG, BIG]])  # only non-characteristic attributes present
    e = eat.select_attributes(a, phi, jnp.array([0]), m=3, counter=2)
    assert not e.named.any()
    assert e.counter_indices.tolist() == [[0, 1]] and e.counter_named.all()
    assert eat.sentences(e, NAMES) == [
        "This is class 0, but none of its characteristic attributes is visible, although it "
        "lacks red head and striped body."
    ]
    e = eat.select_attributes(a, phi, jnp.array([0]), m=3)
    assert e.counter_indices.shape == (1, 0)
    assert eat.sentences(e, NAMES) == [
        "This is class 0, but none of its characteristic attributes is visible."
    ]


def test_textual_precision_counts_named_true_attributes():
    e = eat.select_attributes(
        jnp.array([[BIG, BIG, -BIG, BIG]]), jnp.ones((1, 4)), jnp.array([0]), m=3
    )
    correct, named = eat.textual_precision(e, jnp.array([[1.0, 0.0, 1.0, 1.0]]))
    assert named.tolist() == [3.0] and correct.tolist() == [2.0]


def test_benchmark_names_read_well():
    phi = synthetic.class_attribute_matrix(synthetic.ImageConfig(num_classes=3))
    names = eat.check_attribute_names(synthetic.ATTRIBUTE_NAMES, phi)
    e = eat.select_attributes(jnp.asarray(phi[:1] * 2 * BIG - BIG), phi, jnp.array([0]), m=3)
    (text,) = eat.sentences(e, names)
    assert text.startswith("This is class 0 because of its ") and text.count(",") == 1
    assert all(phi[0, j] == 1 for j in e.indices[0].tolist())


def test_named_errors():
    phi = jnp.ones((2, 4))
    a = jnp.zeros((1, 4))
    with pytest.raises(errors.InputShapeError, match=r"\[C, A\]"):
        eat.select_attributes(a, jnp.ones((2, 5)), jnp.array([0]))
    with pytest.raises(errors.InputShapeError, match=r"\[C, A\]"):
        eat.relevance(a, jnp.ones(4), jnp.array([0]))
    with pytest.raises(errors.InvalidArgumentError, match=">= 1"):
        eat.select_attributes(a, phi, jnp.array([0]), m=0)
    with pytest.raises(errors.InvalidArgumentError, match="counter"):
        eat.select_attributes(a, phi, jnp.array([0]), counter=-1)
    with pytest.raises(errors.TargetOutOfRangeError):
        eat.select_attributes(a, phi, jnp.array([2]))
    with pytest.raises(errors.InvalidArgumentError, match="attribute_names"):
        eat.check_attribute_names(NAMES[:3], phi)
    e = eat.select_attributes(a, phi, jnp.array([0]), m=4)
    with pytest.raises(errors.InvalidArgumentError, match="attribute_names"):
        eat.sentences(e, NAMES[:2])


def test_contract_jit_vmap_batched_and_no_recompile(assert_no_recompile):
    rng = np.random.default_rng(2)
    a = jnp.asarray(rng.normal(size=(6, 5)).astype(np.float32))
    phi = jnp.asarray((rng.random((3, 5)) < 0.5).astype(np.float32))
    t = jnp.array([0, 1, 2, 0, 1, 2])
    for fn in (eat.relevance, lambda aa, pp, tt: eat.select_attributes(aa, pp, tt, m=2, counter=1)):
        eager = assert_no_recompile(fn, a, phi, t)
        jitted = jax.jit(fn)(a, phi, t)
        jax.tree.map(np.testing.assert_array_equal, eager, jitted)
        single = [fn(a[i : i + 1], phi, t[i : i + 1]) for i in range(6)]
        jax.tree.map(
            lambda e, *s: np.testing.assert_array_equal(e, np.concatenate(s)), eager, *single
        )
        vm = jax.vmap(fn, in_axes=(0, None, 0))(a.reshape(2, 3, 5), phi, t.reshape(2, 3))
        jax.tree.map(lambda e, v: np.testing.assert_array_equal(e, v.reshape(e.shape)), eager, vm)


def test_non_finite_logits_or_phi_are_named_errors():
    phi = jnp.ones((2, 4))
    a = jnp.zeros((2, 4))
    t = jnp.array([0, 1])
    for fn in (eat.relevance, eat.select_attributes):
        with pytest.raises(errors.NonFiniteInputError, match="attribute_logits"):
            fn(jnp.full((2, 3), jnp.nan), jnp.ones((4, 3)), t)  # the audit's call
        with pytest.raises(errors.NonFiniteInputError, match="attribute_logits"):
            fn(a.at[1, 2].set(jnp.inf), phi, t)
        with pytest.raises(errors.NonFiniteInputError, match="class_attribute"):
            fn(a, phi.at[0, 0].set(jnp.nan), t)
    # under the caller's jit the value check is skipped (no error, no host copy)
    assert jax.jit(eat.relevance)(a, phi, t).shape == (2, 4)
