"""Finite differences through a spaCy component's real output layer (tests that need spaCy)."""
import numpy
import pytest
from thinc.api import Ops

from thinc_losses_plus.output_layers import find_output_layer


def spy_output_layer(component, forward_input, get_loss):
    """Run a real update; return the output layer, its input X and the dL/dX its backprop passed."""
    layer = find_output_layer(component.model)
    forward, seen = layer._func, {}

    def spy(model, X, is_train):
        Y, backprop = forward(model, X, is_train)
        seen["X"] = X

        def spy_backprop(dY):
            seen["dX"] = backprop(dY)
            return seen["dX"]

        return Y, spy_backprop

    layer._func = spy
    try:
        scores, backprop = component.model.begin_update(forward_input)
        backprop(get_loss(scores)[1])
    finally:
        layer._func = forward
    return layer, seen["X"], seen["dX"]


def assert_finite_differences(layer, X, dX, loss_of_Y, *, h=1e-5, rtol=2e-3):
    """The loss of the layer's float64 output, as a function of its input X, has gradient dX."""
    layer64 = layer.copy()
    layer64.ops = Ops(numpy)
    for name in layer64.param_names:
        layer64.set_param(name, layer64.get_param(name).astype("float64"))

    def f(X):
        return loss_of_Y(layer64._func(layer64, X, True)[0])

    X64 = X.astype("float64")
    rng = numpy.random.default_rng(0)
    scale = max(float(numpy.abs(dX).max()), 1e-3)
    for _ in range(3):
        v = rng.standard_normal(X.shape)
        numeric = (f(X64 + h * v) - f(X64 - h * v)) / (2 * h)
        assert numeric == pytest.approx(float((dX * v).sum()), rel=rtol, abs=rtol * scale * X.size**0.5)
    for index in zip(*(rng.integers(0, d, size=8) for d in X.shape)):
        e = numpy.zeros(X.shape)
        e[index] = h
        numeric = (f(X64 + e) - f(X64 - e)) / (2 * h)
        assert numeric == pytest.approx(float(dX[index]), rel=rtol, abs=rtol * scale)
