"""Margin losses on raw scores: Hinge, SquaredHinge, Logistic (Gluon) and MultiMargin (PyTorch).

PyTorch CPU is the oracle: ``multi_margin_loss`` directly, the others as
torch autograd of their defining formula. Hand-worked numbers pin tiny
inputs; hypothesis checks family identities; bad inputs are refused with the
calculator and the argument named.
"""
import math

import numpy
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from thinc.api import registry

from conftest import to_numpy
from oracle import assert_matches, torch_loss_and_grad
from thinc_losses_plus import BinaryCrossentropy, Hinge, LogisticLoss, MultiMargin, SquaredHinge

N, C = 8, 5


def scores(seed=0, n=N, c=C, scale=1.5):
    return numpy.random.default_rng(seed).normal(0, scale, (n, c))


def signs(seed=0, n=N, c=C):
    return numpy.random.default_rng(seed + 100).choice([-1.0, 1.0], size=(n, c))


def classes(seed=0, n=N, c=C):
    return numpy.random.default_rng(seed + 200).integers(0, c, size=n)


def ours(calc, guesses, truths, xp, dtype="float32", **kwargs):
    grad, loss = calc(xp.asarray(guesses, dtype=dtype), truths, **kwargs)
    return to_numpy(grad).astype("float64"), loss


# PyTorch differential tests ------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.3, 2.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_margin_matches_torch(xp, p, margin, weighted):
    x, y = scores(1), classes(1)
    weight = [0.5, 1.0, 2.0, 0.0, 3.0] if weighted else None
    w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    expected = torch_loss_and_grad(
        lambda g: F.multi_margin_loss(g, torch.tensor(y), p=p, margin=margin, weight=w, reduction="mean"), x
    )
    calc = MultiMargin(p=p, margin=margin, class_weights=weight)
    assert_matches(ours(calc, x, xp.asarray(y), xp), expected)
    assert_matches(ours(calc, x, xp.asarray(y), xp, "float64"), expected, rtol=1e-12, atol=1e-14)
    per_example = F.multi_margin_loss(torch.tensor(x), torch.tensor(y), p=p, margin=margin, weight=w, reduction="none")
    numpy.testing.assert_allclose(
        to_numpy(MultiMargin(p=p, margin=margin, class_weights=weight).get_loss_per_example(xp.asarray(x), y)),
        per_example.numpy(),
        rtol=1e-12,
    )


def test_multi_margin_normalize_false_is_torch_sum(xp):
    x, y = scores(2), classes(2)
    expected = torch_loss_and_grad(lambda g: F.multi_margin_loss(g, torch.tensor(y), p=2, reduction="sum"), x)
    assert_matches(ours(MultiMargin(p=2, normalize=False), x, y.tolist(), xp), expected)


@pytest.mark.parametrize("cls,squared", [(Hinge, False), (SquaredHinge, True)])
@pytest.mark.parametrize("margin", [1.0, 0.0, 2.0])
@pytest.mark.parametrize("binary_labels", [False, True])
def test_hinge_matches_torch_autograd(xp, cls, squared, margin, binary_labels):
    x, y = scores(3), signs(3)
    truths = (y + 1) / 2 if binary_labels else y
    yt = torch.tensor(y)

    def formula(g):
        h = torch.clamp(margin - yt * g, min=0)
        return (h**2 if squared else h).sum() / N

    expected = torch_loss_and_grad(formula, x)
    assert_matches(ours(cls(margin=margin), x, xp.asarray(truths), xp), expected)


@pytest.mark.parametrize("label_format", ["signed", "binary"])
def test_logistic_matches_gluon_formula_in_torch(xp, label_format):
    """Gluon: log(1 + exp(-pred * label)), label mapped 2t - 1 for 'binary'; summed per row here."""
    x, y = scores(4, scale=4.0), signs(4)
    truths = (y + 1) / 2 if label_format == "binary" else y
    yt = torch.tensor(y)
    expected = torch_loss_and_grad(lambda g: F.softplus(-g * yt).sum() / N, x)
    assert_matches(ours(LogisticLoss(label_format=label_format), x, xp.asarray(truths), xp), expected)


def test_sample_weight_matches_weighted_formula(xp):
    x, y = scores(5), signs(5)
    rows = numpy.random.default_rng(5).uniform(0, 2, N)
    w = torch.tensor(rows[:, None])
    yt = torch.tensor(y)
    expected = torch_loss_and_grad(lambda g: (w * torch.clamp(1 - yt * g, min=0) ** 2).sum() / N, x)
    assert_matches(ours(SquaredHinge(), x, xp.asarray(y), xp, sample_weight=xp.asarray(rows)), expected)
    labels = classes(5)
    expected = torch_loss_and_grad(
        lambda g: (torch.tensor(rows) * F.multi_margin_loss(g, torch.tensor(labels), reduction="none")).sum() / N, x
    )
    assert_matches(ours(MultiMargin(), x, xp.asarray(labels), xp, sample_weight=xp.asarray(rows)), expected)


# Hand-worked values ------------------------------------------------------------------


def test_multi_margin_hand_worked(xp):
    x = xp.asarray([[0.2, 0.5, -0.1], [1.0, 0.0, 3.0]], dtype="float64")
    calc = MultiMargin(p=1, margin=1.0, class_weights=[1.0, 2.0, 1.0])
    grad, loss = calc(x, [1, 2])
    # row 0 (y=1, w=2): 2 * (max(0, 1 - 0.5 + 0.2) + max(0, 1 - 0.5 - 0.1)) / 3 = 2 * 1.1 / 3
    # row 1 (y=2): (max(0, 1 - 3 + 1) + max(0, 1 - 3 + 0)) / 3 = 0
    numpy.testing.assert_allclose(to_numpy(calc.get_loss_per_example(x, [1, 2])), [2.2 / 3, 0.0], rtol=1e-12)
    assert loss == pytest.approx(2.2 / 3 / 2, rel=1e-12)
    numpy.testing.assert_allclose(to_numpy(grad), [[1 / 3, -2 / 3, 1 / 3], [0, 0, 0]], rtol=1e-12)


def test_multi_margin_p2_hand_worked(xp):
    x = xp.asarray([[0.0, 0.5]], dtype="float64")
    grad, loss = MultiMargin(p=2, margin=1.0, normalize=False)(x, xp.asarray([0]))
    # h = 1 - 0 + 0.5 = 1.5: loss 1.5^2 / 2; d/dx_1 = 2 * 1.5 / 2, d/dx_0 = -1.5
    assert loss == pytest.approx(1.125, rel=1e-12)
    numpy.testing.assert_allclose(to_numpy(grad), [[-1.5, 1.5]], rtol=1e-12)


def test_hinge_hand_worked_and_kink(xp):
    x = xp.asarray([[2.0, 0.5, -1.0, 1.0]], dtype="float64")
    truths = xp.asarray([[1.0, 1.0, 1.0, 1.0]])
    grad, loss = Hinge()(x, truths)
    # max(0, 1 - x): 0, 0.5, 2, 0 (the last one at the kink, gradient 0)
    assert loss == pytest.approx(2.5, rel=1e-12)
    numpy.testing.assert_array_equal(to_numpy(grad), [[0.0, -1.0, -1.0, 0.0]])
    grad, loss = SquaredHinge(margin=2.0)(x, xp.asarray([[0.0, 0.0, 0.0, 1.0]]))
    # labels 0/1 -> -1/1: max(0, 2 + 2)^2 + 2.5^2 + 1^2 + 1^2
    assert loss == pytest.approx(16 + 6.25 + 1 + 1, rel=1e-12)
    numpy.testing.assert_allclose(to_numpy(grad), [[8.0, 5.0, 2.0, -2.0]], rtol=1e-12)


def test_logistic_hand_worked(xp):
    x = xp.asarray([[0.0, math.log(3.0)]], dtype="float64")
    grad, loss = LogisticLoss(label_format="binary")(x, xp.asarray([[1, 0]]))
    # log(1 + e^0) + log(1 + e^{log 3}); grad -y sigmoid(-y x): -1/2, +3/4
    assert loss == pytest.approx(math.log(2) + math.log(4), rel=1e-12)
    numpy.testing.assert_allclose(to_numpy(grad), [[-0.5, 0.75]], rtol=1e-12)


def test_multi_margin_names_and_missing(xp):
    x = scores(6)
    names = ["A", "B", "C", "D", "E"]
    y = classes(6)
    labels = [names[i] for i in y]
    labels[2] = "?"
    calc = MultiMargin(names=names, missing_value="?", class_weights={"C": 2.0})
    grad, loss = calc(xp.asarray(x), labels)
    plain = MultiMargin(class_weights=[1.0, 1.0, 2.0, 1.0, 1.0])
    keep = [i for i in range(N) if i != 2]
    grad_k, loss_k = plain(xp.asarray(x[keep]), xp.asarray(y[keep]))
    assert loss == pytest.approx(loss_k * (N - 1) / N, rel=1e-12)  # the missing row still counts in N
    numpy.testing.assert_allclose(to_numpy(grad)[keep], to_numpy(grad_k) * (N - 1) / N, rtol=1e-12)
    assert (to_numpy(grad)[2] == 0).all()
    # None labels are missing too
    none_labels = list(y)
    none_labels[2] = None
    assert MultiMargin().get_loss(xp.asarray(x), [None if v is None else int(v) for v in none_labels]) == pytest.approx(
        MultiMargin(names=names, missing_value="?").get_loss(xp.asarray(x), labels), rel=1e-12
    )


# Properties --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), shift=st.floats(-50, 50), p=st.sampled_from([1, 2]))
def test_multi_margin_is_shift_invariant(seed, shift, p):
    x, y = scores(seed % 1000), classes(seed % 1000)
    calc = MultiMargin(p=p)
    grad, loss = calc(x, y)
    grad_s, loss_s = calc(x + shift, y)
    assert loss_s == pytest.approx(loss, rel=1e-9, abs=1e-9)
    # the gradient of each row sums to zero (x_y gets minus the others)
    numpy.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.floats(0.1, 20))
def test_logistic_binary_equals_bce_on_logits(seed, scale):
    x = scores(seed % 1000, scale=scale)
    t = (signs(seed % 1000) + 1) / 2
    grad_l, loss_l = LogisticLoss(label_format="binary")(x, t)
    grad_b, loss_b = BinaryCrossentropy(from_logits=True)(x, t)
    assert loss_l == pytest.approx(loss_b, rel=1e-12)
    numpy.testing.assert_allclose(grad_l, grad_b, rtol=1e-9, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), margin=st.floats(0, 5))
def test_squared_hinge_is_hinge_squared_and_signed_equals_binary(seed, margin):
    x, y = scores(seed % 1000), signs(seed % 1000)
    hinge = Hinge(margin=margin).get_loss_per_example(x[:, :1], y[:, :1])
    squared = SquaredHinge(margin=margin).get_loss_per_example(x[:, :1], y[:, :1])
    numpy.testing.assert_allclose(squared, hinge**2, rtol=1e-12)
    for cls in (Hinge, SquaredHinge):
        grad_s, loss_s = cls(margin=margin)(x, y)
        grad_b, loss_b = cls(margin=margin)(x, (y + 1) / 2)
        assert loss_s == loss_b
        numpy.testing.assert_array_equal(grad_s, grad_b)
        assert loss_s >= 0


# Extreme inputs --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_extreme_scores_are_finite(xp, dtype):
    big = 1e4 if dtype != "float16" else 6e4
    x = xp.asarray([[big, -big, big, -big]], dtype=dtype)
    y = xp.asarray([[1.0, 1.0, -1.0, -1.0]], dtype=dtype)
    for calc in (Hinge(), LogisticLoss()):
        grad, loss = calc(x, y)
        assert math.isfinite(loss) and bool(xp.isfinite(grad).all())
    grad, loss = LogisticLoss()(x, y)
    assert loss == pytest.approx(2 * big, rel=1e-3)
    numpy.testing.assert_allclose(to_numpy(grad).astype("float64"), [[0.0, -1.0, 1.0, 0.0]], atol=1e-6)
    grad, loss = MultiMargin(p=2)(x, xp.asarray([0]))
    assert math.isfinite(loss) and bool(xp.isfinite(grad).all())


# Bad input (SPEC section 7) ------------------------------------------------------------------

ELEMENTWISE = [Hinge(), SquaredHinge(), LogisticLoss(), LogisticLoss(label_format="binary")]


@pytest.mark.parametrize("calc", ELEMENTWISE, ids=repr)
def test_elementwise_bad_inputs(xp, calc):
    x, y = scores(7), signs(7)
    if getattr(calc, "label_format", "signed") == "binary":
        y = (y + 1) / 2
    name = calc.name
    g, t = xp.asarray(x), xp.asarray(y)
    for bad in (math.nan, math.inf):
        b = x.copy()
        b[1, 1] = bad
        with pytest.raises(ValueError, match=rf"Cannot calculate {name}: 'guesses' contains NaN or infinite"):
            calc(xp.asarray(b), t)
        b = y.copy()
        b[1, 1] = bad
        with pytest.raises(ValueError, match=rf"Cannot calculate {name}: 'truths' contains NaN or infinite"):
            calc(g, xp.asarray(b))
    b = y.copy()
    b[0, 0] = 2.0
    with pytest.raises(ValueError, match=rf"{name}: 'truths' must hold labels .*got 2"):
        calc(g, xp.asarray(b))
    b[0, 0] = 0.5
    with pytest.raises(ValueError, match=rf"{name}: 'truths' must hold labels .*got 0.5"):
        calc(g, xp.asarray(b))
    with pytest.raises(ValueError, match=rf"{name}: 'truths' must have shape \(8, 5\)"):
        calc(g, t[:, :2])
    with pytest.raises(ValueError, match=rf"{name}: 'guesses' must have shape \(N,\) or \(N, C\)"):
        calc(g[None], t[None])
    with pytest.raises(TypeError, match=rf"{name}: 'guesses' must have a float dtype"):
        calc(xp.asarray(y.astype("int32")), t)
    with pytest.raises(TypeError, match=rf"{name}: 'guesses' must be a numpy or cupy array"):
        calc(None, t)


def test_label_format_mismatch_refused(xp):
    x, y = xp.asarray(scores(8)), signs(8)
    with pytest.raises(ValueError, match=r"Logistic: 'truths' must hold labels -1 or 1, got 0"):
        LogisticLoss()(x, xp.asarray((y + 1) / 2))
    with pytest.raises(ValueError, match=r"Logistic: 'truths' must hold labels 0 or 1, got -1"):
        LogisticLoss(label_format="binary")(x, xp.asarray(y))
    mixed = y.copy()
    mixed[0, 0], mixed[0, 1] = 0.0, -1.0
    for cls in (Hinge, SquaredHinge):
        with pytest.raises(ValueError, match=rf"{cls.name}: 'truths' mixes -1 and 0 labels"):
            cls()(x, xp.asarray(mixed))


def test_multi_margin_bad_inputs(xp):
    x = xp.asarray(scores(9))
    y = classes(9)
    calc = MultiMargin()
    with pytest.raises(ValueError, match=r"MultiMargin: 'guesses' contains NaN or infinite"):
        b = scores(9)
        b[0, 0] = math.nan
        calc(xp.asarray(b), y)
    with pytest.raises(ValueError, match=r"MultiMargin: 'truths' contains label 5, outside \[0, 5\)"):
        calc(x, xp.asarray([5] + list(y[1:])))
    with pytest.raises(ValueError, match=r"MultiMargin: 'truths' contains label -1"):
        calc(x, [-1] + list(map(int, y[1:])))
    with pytest.raises(TypeError, match=r"MultiMargin: 'truths' must hold integer class indices"):
        calc(x, xp.asarray(y.astype("float64")))
    with pytest.raises(TypeError, match=r"MultiMargin: 'truths' must be class indices \(int\) or names \(str\), got float"):
        calc(x, [float(v) for v in y])
    with pytest.raises(TypeError, match=r"MultiMargin: 'truths' mixes strings"):
        calc(x, ["A"] + list(map(int, y[1:])))
    with pytest.raises(ValueError, match=r"MultiMargin: 'truths' are strings but no 'names'"):
        calc(x, ["A"] * N)
    with pytest.raises(ValueError, match=r"MultiMargin: 'truths' contains unknown label 'Z'"):
        MultiMargin(names=list("ABCDE"))(x, ["Z"] * N)
    with pytest.raises(ValueError, match=r"MultiMargin: 'truths' has 7 labels but the guesses have 8 rows"):
        calc(x, y[:-1])
    with pytest.raises(ValueError, match=r"MultiMargin: 'truths' must be 1-dimensional"):
        calc(x, xp.asarray(y[:, None]))
    with pytest.raises(ValueError, match=r"MultiMargin: 'names' has 3 entries but the guesses have 5 columns"):
        MultiMargin(names=["A", "B", "C"])(x, y)
    with pytest.raises(ValueError, match=r"MultiMargin: 'class_weights' has 2 entries but the guesses have 5 columns"):
        MultiMargin(class_weights=[1.0, 2.0])(x, y)
    with pytest.raises(ValueError, match=r"MultiMargin: 'class_weights' is a dict, which needs 'names'"):
        MultiMargin(class_weights={"A": 1.0})(x, y)
    with pytest.raises(ValueError, match=r"MultiMargin: 'guesses' must be 2-dimensional"):
        calc(x[0], y[:1])
    with pytest.raises(TypeError, match=r"MultiMargin: 'guesses' must have a float dtype"):
        calc(xp.asarray(y[:, None]), y)


@pytest.mark.parametrize(
    "cls,kwargs,error,match",
    [
        (Hinge, {"margin": -1.0}, ValueError, r"'margin' must be in \[0, inf\)"),
        (Hinge, {"margin": math.inf}, ValueError, "'margin' must be in"),
        (SquaredHinge, {"margin": math.nan}, ValueError, "'margin' must not be NaN"),
        (SquaredHinge, {"margin": "1"}, TypeError, "'margin' must be a number"),
        (LogisticLoss, {"label_format": "sign"}, ValueError, r"'label_format' must be one of \['signed', 'binary'\]"),
        (MultiMargin, {"p": 3}, ValueError, r"'p' must be one of \[1, 2\]"),
        (MultiMargin, {"p": 1.0}, TypeError, "'p' must be an int"),
        (MultiMargin, {"margin": -0.5}, ValueError, "'margin' must be in"),
        (MultiMargin, {"class_weights": [1.0, -1.0]}, ValueError, "'class_weights' must be finite and non-negative"),
        (MultiMargin, {"class_weights": {"Z": 1.0}, "names": ["A", "B"]}, ValueError, r"'class_weights' names unknown labels: \['Z'\]"),
        (MultiMargin, {"class_weights": "heavy"}, ValueError, "'class_weights' as a string must be 'balanced'"),
        (MultiMargin, {"class_weights": 2.0}, TypeError, "'class_weights' must be a dict or a list"),
        (MultiMargin, {"names": ["A", "A"]}, ValueError, "'names' contains duplicate names"),
        (MultiMargin, {"missing_value": 1.5}, TypeError, "'missing_value' must be an int or a str"),
    ],
)
def test_bad_settings_refused(cls, kwargs, error, match):
    with pytest.raises(error, match=rf"Cannot create {cls.name}: {match}"):
        cls(**kwargs)


@pytest.mark.parametrize(
    "name,settings",
    [
        ("Hinge.v1", {"margin": "wide"}),
        ("SquaredHinge.v1", {"label_format": "binary"}),
        ("Logistic.v1", {"margin": 1.0}),
        ("MultiMargin.v1", {"p": "two"}),
        ("MultiMargin.v1", {"gamma": 2.0}),
    ],
)
def test_config_validation_refuses_unknown_or_mistyped(name, settings):
    with pytest.raises(Exception) as info:
        registry.resolve({"loss": {"@losses": name, **settings}})
    assert type(info.value).__name__ in ("ConfigValidationError", "ValueError", "TypeError")


def test_configs_resolve_to_classes():
    for name, cls in [("Hinge.v1", Hinge), ("SquaredHinge.v1", SquaredHinge), ("Logistic.v1", LogisticLoss), ("MultiMargin.v1", MultiMargin)]:
        assert type(registry.resolve({"loss": {"@losses": name}})["loss"]) is cls
    calc = registry.resolve({"loss": {"@losses": "MultiMargin.v1", "p": 2, "names": ["a", "b"], "class_weights": {"a": 2}}})["loss"]
    assert calc.p == 2 and calc.class_weights == {"a": 2.0}


def test_config_int_missing_value_masks_int_labels(xp):
    """Whatever config validation does to Union[int, str] (Thinc 9.1 turns ints into strings)."""
    calc = registry.resolve({"loss": {"@losses": "MultiMargin.v1", "missing_value": -1}})["loss"]
    x = xp.asarray(scores(10))
    y = [int(v) for v in classes(10)]
    y[3] = -1
    grad, loss = calc(x, xp.asarray(y))
    assert (to_numpy(grad)[3] == 0).all()
    keep = [i for i in range(N) if i != 3]
    assert loss == pytest.approx(MultiMargin().get_loss(x[keep], [y[i] for i in keep]) * (N - 1) / N, rel=1e-12)


# Input seams (regressions: layout, sample_weight shapes, large values, labels, transfers) ------------------


def _layouts(xp, x):
    """The same values as ``x`` in the layouts the input layer must make C-contiguous."""
    out = {"fortran": xp.asfortranarray(x) if x.ndim > 1 else x}
    if x.ndim > 1:
        wide = xp.zeros(x.shape[:-1] + (x.shape[-1] * 2,), dtype=x.dtype)
        wide[..., ::2] = x
        out["sliced"] = wide[..., ::2]
    else:
        wide = xp.zeros((x.shape[0] * 2,), dtype=x.dtype)
        wide[::2] = x
        out["sliced"] = wide[::2]
    flipped = xp.ascontiguousarray(x[::-1, ::-1] if x.ndim > 1 else x[::-1])
    out["negative-strides"] = flipped[::-1, ::-1] if x.ndim > 1 else flipped[::-1]
    out["broadcast"] = xp.broadcast_to(x[:1], x.shape)
    if xp is numpy:
        frozen = x.copy()
        frozen.setflags(write=False)
        out["read-only"] = frozen
    return out


def _check_layouts(calc, xp, arrays, call):
    """Every layout of every array in ``arrays`` gives the bits of a C-contiguous copy, unmutated."""
    for arg, value in arrays.items():
        for layout, odd in _layouts(xp, value).items():
            args = dict(arrays)
            if layout == "broadcast":  # every row equal to the first: compare with a copy of the same
                args = {k: xp.broadcast_to(v[:1], v.shape) for k, v in arrays.items()}
                expected = call(calc, **{k: v.copy() for k, v in args.items()})
            else:
                expected = call(calc, **arrays)
            args[arg] = odd if layout != "broadcast" else args[arg]
            before = to_numpy(args[arg]).copy()
            grad, loss = call(calc, **args)
            assert loss == expected[1], (arg, layout)
            assert to_numpy(grad).tobytes() == to_numpy(expected[0]).tobytes(), (arg, layout)
            numpy.testing.assert_array_equal(to_numpy(args[arg]), before)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("calc", [Hinge(), SquaredHinge(margin=2.0), LogisticLoss()], ids=repr)
def test_elementwise_any_layout_gives_the_bits_of_a_contiguous_copy(xp, calc, dtype):
    x, y = scores(20), signs(20)
    w = numpy.random.default_rng(20).uniform(0, 2, (N, C))
    arrays = {"guesses": xp.asarray(x, dtype=dtype), "truths": xp.asarray(y, dtype=dtype), "sample_weight": xp.asarray(w)}
    _check_layouts(calc, xp, arrays, lambda c, guesses, truths, sample_weight: c(guesses, truths, sample_weight=sample_weight))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_any_layout_gives_the_bits_of_a_contiguous_copy(xp, p, dtype):
    calc = MultiMargin(p=p, class_weights=[0.5, 1.0, 2.0, 0.0, 3.0], missing_value=-1)
    y = classes(21)
    y[3] = -1
    arrays = {
        "guesses": xp.asarray(scores(21), dtype=dtype),
        "truths": xp.asarray(y),
        "sample_weight": xp.asarray(numpy.random.default_rng(21).uniform(0, 2, (N, C))),
    }
    _check_layouts(calc, xp, arrays, lambda c, guesses, truths, sample_weight: c(guesses, truths, sample_weight=sample_weight))


@pytest.mark.parametrize("calc", [Hinge(), SquaredHinge(), LogisticLoss()], ids=repr)
def test_sample_weight_n_1_with_vector_guesses(xp, calc):
    x, y = xp.asarray(scores(22)[:, 0]), xp.asarray(signs(22)[:, 0])
    w = numpy.random.default_rng(22).uniform(0, 2, N)
    flat = calc(x, y, sample_weight=xp.asarray(w))
    column = calc(x, y, sample_weight=xp.asarray(w[:, None]))
    assert flat[1] == column[1] and column[0].shape == (N,)
    assert to_numpy(flat[0]).tobytes() == to_numpy(column[0]).tobytes()


def test_scores_of_1e20_in_float32_give_finite_results_or_a_named_error(xp):
    x = xp.asarray([[1e20, -1e20, 1e20, -1e20]], dtype="float32")
    y = xp.asarray([[1.0, 1.0, -1.0, -1.0]], dtype="float32")
    for calc in (Hinge(), LogisticLoss(), MultiMargin(p=1)):
        truths = xp.asarray([1]) if isinstance(calc, MultiMargin) else y
        grad, loss = calc(x, truths)
        assert math.isfinite(loss) and bool(xp.isfinite(grad).all()), calc.name
    assert Hinge().get_loss(x, y) == pytest.approx(2e20 + 2, rel=1e-6)
    # squares of 1e20 overflow float32: refused by name, never inf
    with pytest.raises(ValueError, match=r"Cannot calculate SquaredHinge: 'guesses' give a loss that overflows float32"):
        SquaredHinge()(x, y)
    with pytest.raises(ValueError, match=r"Cannot calculate MultiMargin: 'guesses' give a loss that overflows float32"):
        MultiMargin(p=2)(x, xp.asarray([1]))
    # ... unless the scores are on the right side of the margin
    grad, loss = SquaredHinge()(x, xp.asarray([[1.0, -1.0, 1.0, -1.0]], dtype="float32"))
    assert loss == 0.0 and not to_numpy(grad).any()
    # float64 holds the squares
    assert SquaredHinge().get_loss(xp.asarray(x, dtype="float64"), xp.asarray(y, dtype="float64")) == pytest.approx(
        2 * (1e20 + 1) ** 2, rel=1e-6
    )


@pytest.mark.parametrize("calc", [Hinge(), SquaredHinge(), LogisticLoss()], ids=repr)
def test_labels_of_1e20_are_refused(xp, calc):
    x, y = scores(23), signs(23)
    with pytest.raises(ValueError, match=rf"Cannot calculate {calc.name}: 'truths' must hold labels .*got -?1e\+20"):
        calc(xp.asarray(x, dtype="f"), xp.asarray(y * 1e20, dtype="f"))


def test_multi_margin_takes_str_subclasses_like_str(xp):
    names = ["A", "B", "C", "D", "E"]
    labels = [names[i] for i in classes(24)]
    labels[1] = "?"
    calc = MultiMargin(names=names, missing_value="?", class_weights={"B": 2.0})
    x = xp.asarray(scores(24))
    expected = calc(x, labels)
    for other in ([numpy.str_(v) for v in labels], numpy.asarray(labels)):
        grad, loss = calc(x, other)
        assert loss == expected[1]
        assert to_numpy(grad).tobytes() == to_numpy(expected[0]).tobytes()
    assert (to_numpy(expected[0])[1] == 0).all()


@pytest.mark.parametrize("value", [-1, "-1"])
def test_multi_margin_missing_value_as_a_config_string_masks(xp, value):
    x = xp.asarray(scores(25))
    y = classes(25)
    y[4] = -1
    grad, loss = MultiMargin(missing_value=value)(x, xp.asarray(y))
    keep = [i for i in range(N) if i != 4]
    assert (to_numpy(grad)[4] == 0).all()
    assert loss == pytest.approx(MultiMargin().get_loss(x[keep], y[keep]) * (N - 1) / N, rel=1e-12)


def test_multi_margin_binds_names_like_the_other_named_calculators(xp):
    """A spaCy component supplies its labels through ``with_names``: string labels and dict weights then work."""
    calc = MultiMargin(class_weights={"C": 2.0}).with_names(["A", "B", "C", "D", "E"])
    assert calc.names == ["A", "B", "C", "D", "E"] and calc.class_weights == {"C": 2.0}
    x, y = xp.asarray(scores(26)), classes(26)
    by_list = MultiMargin(class_weights=[1.0, 1.0, 2.0, 1.0, 1.0])(x, y)
    grad, loss = calc(x, ["ABCDE"[i] for i in y])
    assert loss == by_list[1]
    assert to_numpy(grad).tobytes() == to_numpy(by_list[0]).tobytes()
    with pytest.raises(ValueError, match=r"Cannot create MultiMargin: 'names' were configured as \['A', 'B'\]"):
        MultiMargin(names=["A", "B"]).with_names(["X", "Y"])


def test_bad_values_raise_the_named_error_even_with_warnings_as_errors(xp):
    """The maths runs before the one transfer of the checks: it must stay silent on bad values."""
    import warnings

    x, y = scores(27), signs(27)
    bad = x.copy()
    bad[0, 0] = math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for calc in (Hinge(), SquaredHinge(), LogisticLoss()):
            with pytest.raises(ValueError, match=rf"Cannot calculate {calc.name}: 'guesses' contains NaN or infinite"):
                calc(xp.asarray(bad), xp.asarray(y))
        for p in (1, 2):
            with pytest.raises(ValueError, match=r"Cannot calculate MultiMargin: 'guesses' contains NaN or infinite"):
                MultiMargin(p=p)(xp.asarray(bad), classes(27))
            with pytest.raises(ValueError, match=r"Cannot calculate MultiMargin: 'truths' contains label 7, outside \[0, 5\)"):
                MultiMargin(p=p)(xp.asarray(x), xp.asarray([7] + list(classes(27)[1:])))


def test_multi_margin_guesses_without_columns_are_refused():
    with pytest.raises(ValueError, match=r"Cannot calculate MultiMargin: 'guesses' must have at least one column"):
        MultiMargin()(numpy.zeros((3, 0)), [0, 0, 0])


def test_every_call_checks_its_values_in_one_transfer(monkeypatch):
    from thinc_losses_plus import _inputs

    runs = []
    original = _inputs.Checks.run
    monkeypatch.setattr(_inputs.Checks, "run", lambda self: runs.append(1) or original(self))
    x, y = scores(28), signs(28)
    labels = classes(28)
    labels[0] = -1
    w = numpy.ones((N, 1))
    cases = [
        (Hinge(), y), (SquaredHinge(), (y + 1) / 2), (LogisticLoss(), y),
        (MultiMargin(p=2, class_weights=[1.0, 2.0, 1.0, 1.0, 0.5], missing_value=-1), labels),
    ]
    for calc, truths in cases:
        for method in ("__call__", "get_grad", "get_loss", "get_loss_per_example"):
            runs.clear()
            getattr(calc, method)(x, truths, sample_weight=w)
            assert len(runs) == 1, (calc.name, method)


def test_multi_margin_balanced_class_weights_are_bound_before_use(xp):
    """``class_weights = "balanced"`` is counted from a corpus (by a spaCy component, or by hand)."""
    calc = MultiMargin(class_weights="balanced")
    x, y = xp.asarray(scores(29)), classes(29)
    with pytest.raises(ValueError, match=r"Cannot calculate MultiMargin: 'class_weights' is 'balanced', which must be counted"):
        calc(x, y)
    bound = calc.with_class_weights([1.0, 2.0, 0.5, 1.0, 1.0])
    expected = MultiMargin(class_weights=[1.0, 2.0, 0.5, 1.0, 1.0])(x, y)
    assert bound(x, y)[1] == expected[1] and calc.class_weights == "balanced"


# Row blocks and memory ------------------------------------------------------------

BLOCKED = [
    Hinge(),
    Hinge(margin=0.5, reduction="elements"),
    SquaredHinge(margin=2.0),
    LogisticLoss(),
    LogisticLoss(label_format="binary"),
]


def _blocked_inputs(calc, n=701, c=37, labels="binary"):
    rng = numpy.random.default_rng(5)
    guesses = rng.normal(scale=2.0, size=(n, c)).astype("float32")
    guesses[rng.uniform(size=(n, c)) < 0.05] = 1.0  # on the kink of the hinge (margin 1)
    truths = (rng.uniform(size=(n, c)) < 0.2).astype("float32")
    label_format = getattr(calc, "label_format", "either")  # the hinges take either
    if label_format == "signed" or (labels == "signed" and label_format == "either"):
        truths = 2 * truths - 1
    return guesses, truths


@pytest.mark.parametrize("calc", BLOCKED, ids=repr)
@pytest.mark.parametrize("labels", ["binary", "signed"])
@pytest.mark.parametrize("weights", ["none", "rows", "elements"])
def test_row_blocks_give_the_bits_of_one_block(calc, labels, weights, monkeypatch):
    """The maths runs in row blocks, the signs made block by block (peak memory: the gradient
    plus a few percent); the bits are those of one block of everything, for the gradient, the
    loss, the row losses and the elementwise losses."""
    from thinc_losses_plus.functional import blocks

    guesses, truths = _blocked_inputs(calc, labels=labels)
    rng = numpy.random.default_rng(6)
    sample_weight = {"none": None, "rows": rng.uniform(size=(701,)), "elements": rng.uniform(size=guesses.shape)}[weights]

    def run():
        kwargs = dict(sample_weight=sample_weight)
        return (
            calc(guesses, truths, **kwargs),
            calc.get_loss_per_example(guesses, truths, **kwargs),
            calc.get_loss_per_element(guesses, truths, **kwargs),
        )

    assert len(list(blocks.scratch_blocks(numpy, guesses, 4))) > 5
    blocked = run()
    monkeypatch.setattr(blocks, "block_rows", lambda shape, n_slots: max(1, int(shape[0])))
    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", guesses.size)
    assert len(list(blocks.scratch_blocks(numpy, guesses, 4))) == 1
    whole = run()
    assert blocked[0][0].tobytes() == whole[0][0].tobytes()
    assert blocked[0][1] == whole[0][1]
    assert blocked[1].tobytes() == whole[1].tobytes()
    assert blocked[2].tobytes() == whole[2].tobytes()


@pytest.mark.parametrize("calc", BLOCKED, ids=repr)
def test_peak_memory_of_call_is_near_the_gradient(calc):
    """SPEC section 8: at most 1.1x the gradient's bytes at 4096x50 (tracemalloc), 0/1 labels
    for the hinges (their signs are made block by block)."""
    from battery import call_memory_ratio

    guesses, truths = _blocked_inputs(calc, n=4096, c=50)
    assert call_memory_ratio(calc, guesses, truths) <= 1.1


MULTI_BLOCKED = [
    MultiMargin(),
    MultiMargin(p=2, margin=0.5),
    MultiMargin(class_weights=[float(w) for w in numpy.linspace(0.5, 2.0, 37)], missing_value=3),
    MultiMargin(p=2, class_weights=[float(w) for w in numpy.linspace(0.5, 2.0, 37)]),
]


@pytest.mark.parametrize("calc", MULTI_BLOCKED, ids=repr)
@pytest.mark.parametrize("weights", ["none", "rows", "elements"])
def test_multi_margin_row_blocks_give_the_bits_of_one_block(calc, weights, monkeypatch):
    """MultiMargin runs in row blocks too (each row's sums see their whole row): the bits of one
    block, for the gradient, the loss and the row losses."""
    from thinc_losses_plus.functional import blocks

    rng = numpy.random.default_rng(7)
    guesses = rng.normal(scale=2.0, size=(701, 37)).astype("float32")
    labels = rng.integers(0, 37, size=701)
    sample_weight = {"none": None, "rows": rng.uniform(size=(701,)), "elements": rng.uniform(size=guesses.shape)}[weights]

    def run():
        kwargs = dict(sample_weight=sample_weight)
        return calc(guesses, labels, **kwargs), calc.get_loss_per_example(guesses, labels, **kwargs)

    assert len(list(blocks.scratch_blocks(numpy, guesses, 2))) > 5
    blocked = run()
    monkeypatch.setattr(blocks, "block_rows", lambda shape, n_slots: max(1, int(shape[0])))
    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", guesses.size)
    assert len(list(blocks.scratch_blocks(numpy, guesses, 2))) == 1
    whole = run()
    assert blocked[0][0].tobytes() == whole[0][0].tobytes()
    assert blocked[0][1] == whole[0][1]
    assert blocked[1].tobytes() == whole[1].tobytes()


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_peak_memory_of_call_is_near_the_gradient(p):
    """SPEC section 8: at most 1.1x the gradient's bytes at 4096x50 (tracemalloc)."""
    from battery import call_memory_ratio

    rng = numpy.random.default_rng(8)
    guesses = rng.normal(scale=2.0, size=(4096, 50)).astype("float32")
    labels = rng.integers(0, 50, size=4096)
    ratio = call_memory_ratio(MultiMargin(p=p), guesses, labels)
    assert ratio <= 1.1, ratio
