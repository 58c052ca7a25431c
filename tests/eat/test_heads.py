"""EATNet: two heads on a zoo backbone, parameters as the backbone's, explainers on either head."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import eat, errors

C, A = 4, 6  # as in conftest.py


def test_outputs_and_backbone_params_as_the_backbone_alone(backbone, images, tiny):
    net, params = tiny
    out = net.apply({"params": params}, images)
    assert out["class"].shape == (4, C) and out["attributes"].shape == (4, A)
    base = backbone.init(jax.random.key(0), images[:1])["params"]
    assert set(params) == set(base) | {"attributes"}
    jax.tree.map(np.testing.assert_array_equal, {k: params[k] for k in base}, base)
    # the class head is the backbone's own output, the attribute head a dense layer on GAP
    np.testing.assert_allclose(out["class"], backbone.apply({"params": base}, images), rtol=1e-6)
    feats = xaijax.from_linen(net).open_layer("block2").run(params, jnp.asarray(images))[1]
    z = feats.mean(axis=(1, 2))
    want = z @ params["attributes"]["kernel"] + params["attributes"]["bias"][None]
    np.testing.assert_allclose(out["attributes"], want, rtol=1e-5, atol=1e-6)


def test_from_attributes_class_scores_are_attributes_times_phi(backbone, images, phi):
    net = eat.eat_net(backbone, heads="from_attributes", class_attribute=phi)
    params = net.init(jax.random.key(0), images[:1])["params"]
    assert "head" not in params  # the backbone's own head is replaced
    out = net.apply({"params": params}, images)
    np.testing.assert_allclose(out["class"], out["attributes"] @ phi.T, rtol=1e-6, atol=1e-6)


def test_one_explainer_on_each_head(tiny, images):
    net, params = tiny
    x = jnp.asarray(images)
    out = net.apply({"params": params}, x)
    # gradient of the class head = d class_logit / dx
    t = jnp.array([0, 1, 2, 3])
    got = xaijax.gradient(eat.eat_model(net))(params, x, t)
    want = jax.grad(lambda xx: net.apply({"params": params}, xx)["class"][jnp.arange(4), t].sum())(
        x
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # integrated gradients of an attribute logit: completeness against a black image
    ta = jnp.array([5, 0, 3, 1])
    ig = xaijax.integrated_gradients(eat.eat_model(net, head="attributes"), steps=64)
    attr = ig(params, x, ta)
    base = net.apply({"params": params}, jnp.zeros_like(x))["attributes"]
    delta = out["attributes"][jnp.arange(4), ta] - base[jnp.arange(4), ta]
    np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), delta, rtol=0.05, atol=1e-3)
    # grad_cam explains either head through the same layer
    for head, target in (("class", t), ("attributes", ta)):
        g = xaijax.grad_cam(eat.eat_model(net, head=head), "block2")(params, x, target)
        assert g.shape == (4, 32, 32) and np.isfinite(np.asarray(g)).all()


def test_named_errors(backbone, phi):
    with pytest.raises(errors.InvalidArgumentError, match="heads"):
        eat.eat_net(backbone, A, heads="serial")
    with pytest.raises(errors.InvalidArgumentError, match="class_attribute"):
        eat.eat_net(backbone, A, heads="from_attributes")
    with pytest.raises(errors.InputShapeError, match="rows"):
        eat.eat_net(backbone, class_attribute=phi[:3])
    with pytest.raises(errors.InputShapeError, match="columns"):
        eat.eat_net(backbone, A + 1, class_attribute=phi)
    with pytest.raises(errors.InputShapeError, match=r"\[C, A\]"):
        eat.eat_net(backbone, class_attribute=phi[0])
    with pytest.raises(errors.InvalidArgumentError, match="num_attributes"):
        eat.eat_net(backbone)

    net = eat.eat_net(backbone, A, head_name="classifier")
    with pytest.raises(errors.InvalidArgumentError, match="head_name"):
        net.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_lazy_import_surface():
    assert xaijax.eat is eat and "eat" in dir(xaijax)
    assert all(hasattr(eat, name) for name in eat.__all__)
