"""The one jaxpr interpreter (xaijax._jaxpr), used by guided backprop and CNN Fixations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _jaxpr
from xaijax.attribution import guided_relu, replace_relu


@jax.custom_vjp
def _odd_sin(x):
    return jnp.sin(x)


_odd_sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (-g,))


def _nested(w, x):
    """Every kind of call: jit, custom_jvp (jax.nn.relu), custom_vjp, checkpoint, closed_call."""
    h = jax.jit(lambda a: jax.nn.relu(a @ w))(x)
    h = jax.checkpoint(lambda a: jnp.maximum(a, 0.0) * 2.0)(h)
    h = _odd_sin(h)
    h = jax.jit(jax.jit(lambda a: a + 1.0))(h)
    return h.sum(axis=1)


def _args():
    w = jax.random.normal(jax.random.key(0), (3, 5))
    x = jax.random.normal(jax.random.key(1), (4, 3))
    return w, x


def test_flatten_inlines_every_call_and_evaluates_to_the_function():
    w, x = _args()
    closed = jax.make_jaxpr(_nested)(w, x)
    names = {e.primitive.name for e in closed.jaxpr.eqns}
    assert names & set(_jaxpr.CALL_PRIMITIVES), names  # the case has calls to inline
    flat = _jaxpr.flatten(closed)
    assert not {s.primitive.name for s in flat.steps} & set(_jaxpr.CALL_PRIMITIVES)
    values = _jaxpr.evaluate(flat, [w, x])
    (out,) = [_jaxpr.read(values, r) for r in flat.out_ids]
    np.testing.assert_allclose(out, _nested(w, x), rtol=1e-6)


def test_control_flow_stays_one_step():
    def f(x):
        def body(carry):
            i, a = carry
            return i + 1, jnp.maximum(a, 0.0) + 1.0

        return jax.lax.while_loop(lambda c: c[0] < 3, body, (0, x))[1]

    flat = _jaxpr.flatten(jax.make_jaxpr(f)(jnp.ones(3)))
    assert [s.primitive.name for s in flat.steps] == ["while"]
    values = _jaxpr.evaluate(flat, [jnp.arange(3.0) - 1])
    np.testing.assert_allclose(_jaxpr.read(values, flat.out_ids[0]), [3.0, 3.0, 4.0])


def test_rewrite_replaces_steps_at_any_depth():
    w, x = _args()
    closed = jax.make_jaxpr(_nested)(w, x)
    flat = _jaxpr.flatten(closed)
    seen = []

    def rewrite(step, invals):
        if step.primitive.name == "max":
            seen.append(step)
            return [jnp.zeros(flat.avals[step.outputs[0]].shape)]
        return None

    values = _jaxpr.evaluate(flat, [w, x], rewrite)
    assert len(seen) == 2  # the ReLU inside jit(custom_jvp) and the one inside checkpoint
    expected = (jnp.sin(jnp.zeros((4, 5))) + 1.0).sum(axis=1)
    np.testing.assert_allclose(_jaxpr.read(values, flat.out_ids[0]), expected, rtol=1e-6)


def test_replace_relu_reaches_relus_inside_checkpoint():
    # Regression: guided backprop's own table lacked "remat2" (jax.checkpoint's primitive in
    # JAX 0.10), so a ReLU inside a checkpointed block kept the plain ReLU gradient.
    v = jnp.array([1.0, -1.0, 0.5, -2.0])
    x = jnp.array([[1.0, 2.0, -1.0, 3.0]])

    def f(x):
        return jax.checkpoint(jax.nn.relu)(x) @ v

    grad = jax.grad(lambda a: replace_relu(f)(a).sum())(x)
    # guided rule: gradient v where x > 0 and v > 0, else 0
    np.testing.assert_allclose(grad, [[1.0, 0.0, 0.0, 0.0]])
    plain = jax.grad(lambda a: f(a).sum())(x)
    np.testing.assert_allclose(plain, [[1.0, -1.0, 0.0, -2.0]])


def test_replace_relu_keeps_the_forward_values():
    w, x = _args()
    np.testing.assert_allclose(replace_relu(_nested, guided_relu)(w, x), _nested(w, x), rtol=1e-6)
