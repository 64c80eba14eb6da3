"""CTC against PyTorch, slow float64 references and hand-worked numbers; its bad inputs."""
import math
import warnings

import numpy
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from thinc.api import registry

from cases.ctc import brute_force_ctc, feasible_labels, textbook_ctc
from conftest import to_numpy
from thinc_losses_plus import CTC


def softmax(z):
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def batch(seed=0, n=6, c=5, blank=0, t_range=(1, 12), scale=2.0, repeats=True):
    """Logits of variable length and feasible label sequences (with repeated labels)."""
    rng = numpy.random.default_rng(seed)
    logits, labels = [], []
    for _ in range(n):
        t = int(rng.integers(*t_range))
        logits.append(rng.normal(scale=scale, size=(t, c)))
        labels.append(feasible_labels(rng, t, c, blank))
    if repeats:  # make sure adjacent repeats (which need a blank between) occur
        i = max(range(n), key=lambda k: logits[k].shape[0])
        other = next(x for x in range(c) if x != blank)
        longer = [other, other] + labels[i][: max(logits[i].shape[0] - 3, 0)]
        needed = len(longer) + sum(a == b for a, b in zip(longer, longer[1:]))
        labels[i] = longer if needed <= logits[i].shape[0] else [other, other]
    return logits, labels


def torch_ctc(logits, labels, *, blank=0, reduction="mean", zero_infinity=False, dtype=torch.float64):
    """PyTorch's loss and its gradient w.r.t. the logits (log_softmax inside), per sequence."""
    steps = [z.shape[0] for z in logits]
    padded = numpy.zeros((max(steps), len(logits), logits[0].shape[1]))
    for i, z in enumerate(logits):
        padded[: len(z), i] = z
    x = torch.tensor(padded, dtype=dtype, requires_grad=True)
    flat = [c for seq in labels for c in seq]
    loss = F.ctc_loss(
        torch.log_softmax(x, -1),
        torch.tensor(flat, dtype=torch.long),
        torch.tensor(steps),
        torch.tensor([len(seq) for seq in labels]),
        blank=blank,
        reduction=reduction,
        zero_infinity=zero_infinity,
    )
    loss.backward()
    grad = x.grad.numpy()
    return loss.item(), [grad[:t, i].astype("float64") for i, t in enumerate(steps)]


def as_guesses(xp, logits, from_logits, dtype="float64"):
    return [xp.asarray((z if from_logits else softmax(z)).astype(dtype)) for z in logits]


# PyTorch ----------------------------------------------------------------------


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("blank", [0, 3])
def test_matches_torch_float64(xp, from_logits, normalize, blank):
    logits, labels = batch(seed=blank, blank=blank)
    grads, loss = CTC(blank=blank, normalize=normalize, from_logits=from_logits)(
        as_guesses(xp, logits, from_logits), labels
    )
    expected_loss, expected_grads = torch_ctc(logits, labels, blank=blank, reduction="mean" if normalize else "sum")
    assert loss == pytest.approx(expected_loss, rel=1e-10)
    for g, e in zip(grads, expected_grads, strict=True):
        numpy.testing.assert_allclose(to_numpy(g), e, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_torch_float32(xp, from_logits, normalize):
    logits, labels = batch(seed=7, n=12, c=8, t_range=(20, 60))
    logits = [z.astype("float32").astype("float64") for z in logits]  # the same float32 inputs on both sides
    guesses = as_guesses(xp, logits, from_logits, "float32")
    grads, loss = CTC(normalize=normalize, from_logits=from_logits)(guesses, labels)
    reduction = "mean" if normalize else "sum"
    expected_loss, expected_grads = torch_ctc(logits, labels, reduction=reduction, dtype=torch.float32)
    exact_loss, _ = torch_ctc(logits, labels, reduction=reduction)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert loss == pytest.approx(exact_loss, rel=1e-5)
    for g, e in zip(grads, expected_grads, strict=True):
        assert g.dtype == numpy.float32
        numpy.testing.assert_allclose(to_numpy(g), e, rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("n_classes", [3, 300])
def test_matches_torch_few_and_many_classes(xp, n_classes):
    """Few classes (C + 1 <= the state width) and many (a vocabulary) take different gathers."""
    logits, labels = batch(seed=n_classes, n=5, c=n_classes, blank=1, t_range=(5, 25))
    grads, loss = CTC(blank=1, from_logits=True)(as_guesses(xp, logits, True), labels)
    expected_loss, expected_grads = torch_ctc(logits, labels, blank=1)
    assert loss == pytest.approx(expected_loss, rel=1e-10)
    for g, e in zip(grads, expected_grads, strict=True):
        numpy.testing.assert_allclose(to_numpy(g), e, rtol=1e-9, atol=1e-12)


def test_zero_infinity_matches_torch(xp):
    logits, labels = batch(seed=3, n=5, t_range=(3, 8))
    labels[1] = [1, 2] * logits[1].shape[0]  # 2T labels in T steps: impossible
    labels[3] = [2] * logits[3].shape[0]  # T repeated labels need 2T - 1 steps: impossible
    for normalize, reduction in ((True, "mean"), (False, "sum")):
        loss_calc = CTC(zero_infinity=True, normalize=normalize, from_logits=True)
        grads, loss = loss_calc(as_guesses(xp, logits, True), labels)
        expected_loss, expected_grads = torch_ctc(logits, labels, reduction=reduction, zero_infinity=True)
        assert loss == pytest.approx(expected_loss, rel=1e-10)
        for g, e in zip(grads, expected_grads, strict=True):
            numpy.testing.assert_allclose(to_numpy(g), e, rtol=1e-9, atol=1e-12)
        assert not to_numpy(grads[1]).any() and not to_numpy(grads[3]).any()
        per_example = to_numpy(loss_calc.get_loss_per_example(as_guesses(xp, logits, True), labels))
        assert per_example[1] == 0.0 and per_example[3] == 0.0 and (per_example[[0, 2, 4]] > 0).all()


def test_impossible_alignment_raises_instead_of_torchs_inf_and_nan(xp):
    logits, labels = batch(seed=4, n=3, t_range=(4, 6))
    labels[2] = [1, 1, 1, 1]  # four repeats need 7 steps
    expected = r"CTC: 'truths' sequence 2 has 4 labels .* needs at least 7 .*zero_infinity=True"
    with pytest.raises(ValueError, match=expected):
        CTC(from_logits=True)(as_guesses(xp, logits, True), labels)
    # PyTorch's answer without zero_infinity: an infinite loss and a NaN gradient.
    loss, grads = torch_ctc(logits, labels, reduction="sum")
    assert loss == math.inf and numpy.isnan(grads[2]).all()


# Slow references and hand-worked numbers ----------------------------------------


def test_hand_worked_two_steps(xp):
    y = numpy.asarray([[0.6, 0.4], [0.3, 0.7]])  # columns: blank, "a"
    grads, loss = CTC(names=["-", "a"])([xp.asarray(y)], [["a"]])
    # Paths "a-", "-a", "aa": 0.4*0.3 + 0.6*0.7 + 0.4*0.7 = 0.82
    assert loss == pytest.approx(-math.log(0.82), rel=1e-12)
    # P(a at t=0) = (0.12 + 0.28) / 0.82, P(a at t=1) = (0.42 + 0.28) / 0.82; gradient y - occupancy.
    a0, a1 = 0.40 / 0.82, 0.70 / 0.82
    expected = [[0.6 - (1 - a0), 0.4 - a0], [0.3 - (1 - a1), 0.7 - a1]]
    numpy.testing.assert_allclose(to_numpy(grads[0]), expected, rtol=1e-12)


def test_single_path_and_empty_labels(xp):
    rng = numpy.random.default_rng(5)
    y = softmax(rng.normal(size=(4, 5)))
    labels = [1, 3, 2, 4]  # T == L and no repeats: exactly one path
    grads, loss = CTC(normalize=False)([xp.asarray(y)], [labels])
    assert loss == pytest.approx(-numpy.log(y[numpy.arange(4), labels]).sum(), rel=1e-12)
    numpy.testing.assert_allclose(to_numpy(grads[0]), y - numpy.eye(5)[labels], atol=1e-12)
    grads, loss = CTC(normalize=False)([xp.asarray(y)], [[]])  # no labels: all blanks
    assert loss == pytest.approx(-numpy.log(y[:, 0]).sum(), rel=1e-12)
    numpy.testing.assert_allclose(to_numpy(grads[0]), y - numpy.eye(5)[[0, 0, 0, 0]], atol=1e-12)


def test_zero_steps(xp):
    empty = xp.zeros((0, 3))
    grads, loss = CTC()([empty], [[]])
    assert loss == 0.0 and grads[0].shape == (0, 3)
    with pytest.raises(ValueError, match="CTC: 'truths' sequence 0 has 1 labels"):
        CTC()([empty], [[1]])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), blank=st.integers(0, 3), from_logits=st.booleans())
def test_matches_brute_force_enumeration(seed, blank, from_logits):
    logits, labels = batch(seed=seed, n=4, c=4, blank=blank, t_range=(1, 6), repeats=False)
    guesses = as_guesses(numpy, logits, from_logits)
    settings_ = {"blank": blank, "from_logits": from_logits}
    per_example = CTC(normalize=False, **settings_).get_loss_per_example(guesses, labels)
    numpy.testing.assert_allclose(per_example, brute_force_ctc(guesses, labels, settings_), rtol=1e-10)
    numpy.testing.assert_allclose(per_example, textbook_ctc(guesses, labels, settings_), rtol=1e-10)


# Properties ---------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.floats(0.1, 8.0))
def test_gradient_is_softmax_minus_an_occupancy(seed, scale):
    """Each gradient row is y - gamma with gamma a distribution over the classes."""
    logits, labels = batch(seed=seed, n=5, c=6, t_range=(1, 20), scale=scale)
    grads, _ = CTC(normalize=False, from_logits=True)(logits, labels)
    for z, g in zip(logits, grads):
        occupancy = softmax(z) - g
        assert (occupancy > -1e-12).all() and (occupancy < 1 + 1e-12).all()
        numpy.testing.assert_allclose(occupancy.sum(axis=1), 1.0, rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_loss_is_bounded_by_any_single_path(seed):
    """0 <= -log p(l|x) <= -log P(one valid path): here labels separated by blanks, blanks after."""
    logits, labels = batch(seed=seed, n=4, c=5, t_range=(1, 15), repeats=False)
    per_example = CTC(normalize=False, from_logits=True).get_loss_per_example(logits, labels)
    for z, seq, loss in zip(logits, labels, per_example):
        log_y = numpy.log(softmax(z))
        path = []
        for a, b in zip(seq, seq[1:] + [None]):
            path += [a] + ([0] if a == b else [])
        path += [0] * (len(z) - len(path))
        assert 0 <= loss <= -log_y[numpy.arange(len(z)), path].sum() + 1e-9


def test_batch_equals_one_sequence_at_a_time(xp):
    logits, labels = batch(seed=8, n=7, t_range=(1, 30))
    guesses = as_guesses(xp, logits, True)
    loss_calc = CTC(normalize=False, from_logits=True)
    grads, loss = loss_calc(guesses, labels)
    singles = [loss_calc([g], [seq]) for g, seq in zip(guesses, labels)]
    assert loss == pytest.approx(sum(s[1] for s in singles), rel=1e-12)
    for g, (single_grads, _) in zip(grads, singles):
        numpy.testing.assert_allclose(to_numpy(g), to_numpy(single_grads[0]), rtol=1e-12, atol=1e-15)


def test_truth_formats_agree(xp):
    logits, labels = batch(seed=9, n=4, c=4)
    names = ["<b>", "x", "y", "z"]
    guesses = as_guesses(xp, logits, True)
    expected = CTC(from_logits=True)(guesses, labels)
    formats = [
        [tuple(seq) for seq in labels],
        [numpy.asarray(seq, dtype="int32") for seq in labels],
        [xp.asarray(numpy.asarray(seq, dtype="int64")) for seq in labels],
        [[names[c] for c in seq] for seq in labels],
    ]
    for truths in formats:
        grads, loss = CTC(from_logits=True, names=names)(guesses, truths)
        assert loss == expected[1]
        for a, b in zip(grads, expected[0]):
            assert numpy.array_equal(to_numpy(a), to_numpy(b))


def test_sample_weight_is_per_sequence(xp):
    logits, labels = batch(seed=10, n=4)
    guesses = as_guesses(xp, logits, True)
    loss_calc = CTC(from_logits=True)
    weights = numpy.asarray([0.5, 2.0, 0.0, 1.0])
    grads, loss = loss_calc(guesses, labels, sample_weight=xp.asarray(weights))
    plain_grads, _ = loss_calc(guesses, labels)
    per_example = to_numpy(CTC(normalize=False, from_logits=True).get_loss_per_example(guesses, labels))
    lengths = numpy.asarray([max(len(s), 1) for s in labels])
    assert loss == pytest.approx((weights * per_example / lengths).sum() / 4, rel=1e-10)
    for w, g, p in zip(weights, grads, plain_grads):
        numpy.testing.assert_allclose(to_numpy(g), w * to_numpy(p), rtol=1e-12, atol=1e-15)
    same, _ = loss_calc(guesses, labels, sample_weight=xp.asarray(weights[:, None]))
    assert all(numpy.array_equal(to_numpy(a), to_numpy(b)) for a, b in zip(same, grads))


# Stability ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_logits_are_finite_and_exact(xp, dtype):
    rng = numpy.random.default_rng(11)
    logits = [rng.choice([-1e4, 1e4], size=(t, 5)) for t in (6, 9, 4)]
    labels = [[1, 2, 2], [3, 1, 4, 4, 2], [2]]
    grads, loss = CTC(from_logits=True)([xp.asarray(z.astype(dtype)) for z in logits], labels)
    expected_loss, expected_grads = torch_ctc(logits, labels)
    assert numpy.isfinite(loss) and loss == pytest.approx(expected_loss, rel=1e-6)
    # float32 log-values near 1e4 round by ~1e-3: PyTorch's own float32 gradient is 4e-4 off here.
    atol = 1e-6 if dtype == "float64" else 5e-4
    for g, e in zip(grads, expected_grads):
        assert numpy.isfinite(to_numpy(g)).all()
        numpy.testing.assert_allclose(to_numpy(g), e, atol=atol)


def test_paths_far_behind_that_win_later_are_kept(xp):
    """Log space keeps a state 1000 nats behind the best one: its path wins in the end.

    Target "ab"; 50 frames favour "b" by 20 nats, then 50 favour "a" by 40. The best
    path emits "a" throughout and "b" at the last frame; at frame 50 it lags the
    path that emitted "b" early by ~1000 nats (beyond float64's exp range).
    """
    z = numpy.zeros((100, 3))
    z[:50, 2] = 20.0
    z[50:, 1] = 40.0
    for dtype in ("float32", "float64"):
        _, loss = CTC(from_logits=True, normalize=False)([xp.asarray(z.astype(dtype))], [[1, 2]])
        expected, _ = torch_ctc([z], [[1, 2]], reduction="sum")
        assert loss == pytest.approx(expected, rel=1e-6)


def test_zero_probabilities_give_a_finite_loss_without_warnings(xp):
    y = numpy.asarray([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # "a" is never emitted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grads, loss = CTC()([xp.asarray(y)], [[1]])
    assert numpy.isfinite(loss) and loss > 700  # -log of a probability clamped at the smallest float64
    assert numpy.isfinite(to_numpy(grads[0])).all()


def test_float16_computes_in_float32(xp):
    logits, labels = batch(seed=12, n=3)
    grads, loss = CTC(from_logits=True)(as_guesses(xp, logits, True, "float16"), labels)
    exact, _ = torch_ctc([z.astype("float16").astype("float64") for z in logits], labels)
    assert all(g.dtype == numpy.float16 for g in grads)
    assert loss == pytest.approx(exact, rel=1e-4)


def test_empty_batch():
    assert CTC()([], []) == ([], 0.0)
    assert CTC().get_loss_per_example([], []).shape == (0,)


# Configs -------------------------------------------------------------------------


def test_registered_and_validated_by_config():
    loss_calc = registry.resolve({"loss": {"@losses": "CTC.v1", "blank": 2, "zero_infinity": True}})["loss"]
    assert isinstance(loss_calc, CTC) and loss_calc.blank == 2 and loss_calc.zero_infinity
    with pytest.raises(Exception, match="blank"):
        registry.resolve({"loss": {"@losses": "CTC.v1", "blank": "x"}})
    with pytest.raises(Exception, match="reduction"):
        registry.resolve({"loss": {"@losses": "CTC.v1", "reduction": "mean"}})


# Bad input (SPEC section 7) ----------------------------------------------------------


def good(xp, c=4, dtype="float64"):
    rng = numpy.random.default_rng(13)
    return [xp.asarray(softmax(rng.normal(size=(t, c))).astype(dtype)) for t in (3, 4)]


BAD_TRUTHS = [
    ([[1, 4], [2]], {}, ValueError, r"'truths' sequence 0 contains label 4, outside \[0, 4\)"),
    ([[1], [-2]], {}, ValueError, r"'truths' sequence 1 contains label -2, outside"),
    ([[1], [2, 0]], {}, ValueError, r"'truths' sequence 1 contains the blank class 0"),
    ([[1], [3, 2]], {"blank": 3}, ValueError, r"'truths' sequence 1 contains the blank class 3"),
    ([["a"], ["b", "q"]], {"names": ["-", "a", "b", "c"]}, ValueError, r"'truths' sequence 1 contains unknown label"),
    ([["a"], ["-"]], {"names": ["-", "a", "b", "c"]}, ValueError, r"'truths' sequence 1 contains the blank class 0"),
    ([["a"], ["b"]], {}, ValueError, r"'truths' sequence 0 holds strings but no 'names'"),
    ([[1]], {}, ValueError, r"'truths' has 1 label sequences but the guesses have 2"),
    ([[1], [2], [3]], {}, ValueError, r"'truths' has 3 label sequences"),
    ([[1.0], [2]], {}, TypeError, r"'truths' sequence 0 must hold int labels or names \(str\), got float"),
    ([[True], [2]], {}, TypeError, r"'truths' sequence 0 must hold int labels .* got bool"),
    ([[1, "a"], [2]], {"names": ["-", "a", "b", "c"]}, TypeError, r"'truths' sequence 0 mixes strings"),
    (["ab", [2]], {"names": ["-", "a", "b", "c"]}, TypeError, r"'truths' sequence 0 is a str, not a list of labels"),
    ([numpy.asarray([1.0]), [2]], {}, TypeError, r"'truths' sequence 0 must hold integer labels, got dtype float64"),
    ([numpy.asarray([[1]]), [2]], {}, ValueError, r"'truths' sequence 0 must be 1-dimensional"),
    ([None, [2]], {}, TypeError, r"'truths' sequence 0 must be an int array or a list of labels, got NoneType"),
    (numpy.asarray([1, 2]), {}, TypeError, r"'truths' must be a list of label sequences"),
    ([[1, 1, 1], [2]], {}, ValueError, r"'truths' sequence 0 has 3 labels \(2 repeated .* at least 5 time steps, but .* 3"),
]


@pytest.mark.parametrize("truths, settings_, error, match", BAD_TRUTHS)
def test_bad_truths(xp, truths, settings_, error, match):
    with pytest.raises(error, match="Cannot calculate CTC: " + match):
        CTC(**settings_)(good(xp), truths)


def test_bad_guesses(xp):
    truths = [[1], [2]]
    g = good(xp)
    cases = [
        (xp.stack([g[0], g[0]]), TypeError, r"'guesses' must be a list of \(T, C\) arrays"),
        ((g[0], g[1]), TypeError, r"'guesses' as a tuple must be \(padded"),
        ([g[0], xp.asarray([[1, 0, 0, 0]])], TypeError, r"'guesses' sequence 1 must be a float array, got dtype int"),
        ([g[0], [[1.0, 0.0, 0.0, 0.0]]], TypeError, r"'guesses' sequence 1 must be a float array, got list"),
        ([g[0], g[1][0]], ValueError, r"'guesses' sequence 1 must be 2-dimensional"),
        ([g[0], g[1][:, :3]], ValueError, r"'guesses' sequence 1 has 3 columns, sequence 0 has 4"),
        ([g[0], g[1].astype("float32")], TypeError, r"'guesses' sequence 1 is a .* of float32, sequence 0 a .*64"),
        ([g[0], g[1] * 0.5], ValueError, r"'guesses' rows must sum to 1 .*from_logits=True"),
        ([g[0], g[1] - 0.5], ValueError, r"'guesses' must lie in \[0, 1\]"),
    ]
    nan = g[1].copy()
    nan[1, 2] = numpy.nan
    cases.append(([g[0], nan], ValueError, r"'guesses' contains NaN"))
    for guesses, error, match in cases:
        with pytest.raises(error, match="Cannot calculate CTC: " + match):
            CTC()(guesses, truths)
    inf = g[1].copy()
    inf[0, 0] = numpy.inf
    with pytest.raises(ValueError, match="Cannot calculate CTC: 'guesses' contains NaN or infinite values"):
        CTC(from_logits=True)([g[0], inf], truths)
    with pytest.raises(ValueError, match=r"Cannot calculate CTC: 'blank' is 4 but the guesses have only 4 columns"):
        CTC(blank=4)(g, truths)
    with pytest.raises(ValueError, match=r"Cannot calculate CTC: 'names' has 3 entries but the guesses have 4"):
        CTC(names=["-", "a", "b"])(g, [["a"], ["b"]])


def test_bad_sample_weight(xp):
    g, truths = good(xp), [[1], [2]]
    with pytest.raises(ValueError, match=r"Cannot calculate CTC: 'sample_weight' must have shape \(2,\)"):
        CTC()(g, truths, sample_weight=xp.ones((3,)))
    with pytest.raises(ValueError, match=r"Cannot calculate CTC: 'sample_weight' must be non-negative"):
        CTC()(g, truths, sample_weight=xp.asarray([1.0, -1.0]))


@pytest.mark.parametrize(
    "settings_, error, match",
    [
        ({"blank": -1}, ValueError, r"'blank' must be >= 0"),
        ({"blank": 1.0}, TypeError, r"'blank' must be an int"),
        ({"blank": True}, TypeError, r"'blank' must be an int"),
        ({"zero_infinity": 1}, TypeError, r"'zero_infinity' must be a bool"),
        ({"from_logits": "yes"}, TypeError, r"'from_logits' must be a bool"),
        ({"normalize": None}, TypeError, r"'normalize' must be a bool"),
        ({"names": ["a", "a"]}, ValueError, r"'names' contains duplicate names"),
        ({"names": "abc"}, TypeError, r"'names' must be a list of strings"),
    ],
)
def test_bad_settings(settings_, error, match):
    with pytest.raises(error, match="Cannot create CTC: " + match):
        CTC(**settings_)


# The public hook, the input and label layers (regressions) ------------------------


def test_evaluate_states_the_per_sequence_divisors(xp):
    logits, labels = batch(seed=14, n=5)
    guesses = as_guesses(xp, logits, True)
    loss_calc = CTC(from_logits=True)
    result = loss_calc.evaluate(guesses, labels)
    expected = numpy.asarray([max(len(s), 1) * 5.0 for s in labels])
    numpy.testing.assert_array_equal(to_numpy(result.divisor), expected)
    grads, loss = loss_calc(guesses, labels)
    assert result.loss() == loss
    assert all(numpy.array_equal(to_numpy(a), to_numpy(b)) for a, b in zip(result.grad, grads))
    plain = CTC(from_logits=True, normalize=False).evaluate(guesses, labels, want_grad=False)
    assert plain.grad is None and plain.divisor == 1
    numpy.testing.assert_array_equal(to_numpy(plain.per_example), to_numpy(result.per_example))


def test_str_subclass_labels_are_labels_like_str(xp):
    """numpy.str_ (what iterating a numpy array of strings gives) was refused."""
    logits, labels = batch(seed=15, n=4, c=4)
    names = ["<b>", "x", "y", "z"]
    guesses = as_guesses(xp, logits, True)
    loss_calc = CTC(from_logits=True, names=names)
    as_str = [[names[c] for c in seq] for seq in labels]
    as_numpy_str = [list(numpy.asarray(seq, dtype="U3")) if seq else [] for seq in as_str]
    assert any(type(label) is numpy.str_ for seq in as_numpy_str for label in seq)
    mixed = [[numpy.str_(label) if k % 2 else label for k, label in enumerate(seq)] for seq in as_str]
    expected_grads, expected = loss_calc(guesses, as_str)
    for truths in (as_numpy_str, mixed):
        grads, loss = loss_calc(guesses, truths)
        assert loss == expected
        assert all(numpy.array_equal(to_numpy(a), to_numpy(b)) for a, b in zip(grads, expected_grads))
    with pytest.raises(ValueError, match="Cannot calculate CTC: 'truths' sequence 0 contains unknown label 'q'"):
        loss_calc(guesses, [[numpy.str_("q")]] + as_str[1:])


def layouts(xp, x):
    """The same values in other memory layouts: Fortran, a slice, negative strides, read-only, broadcast."""
    fortran = xp.asfortranarray(x)
    wide = xp.zeros((x.shape[0], 2 * x.shape[1]), dtype=x.dtype)
    wide[:, ::2] = x
    flipped = xp.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]
    out = {"fortran": fortran, "slice": wide[:, ::2], "negative strides": flipped}
    if xp is numpy:
        frozen = x.copy()
        frozen.flags.writeable = False
        out["read-only"] = frozen
    return out


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_every_layout_gives_the_bits_of_a_contiguous_copy(xp, from_logits, dtype):
    logits, labels = batch(seed=16, n=4, c=5)
    guesses = as_guesses(xp, logits, from_logits, dtype)
    loss_calc = CTC(from_logits=from_logits)
    expected_grads, expected = loss_calc(guesses, labels)
    for kind in layouts(xp, guesses[0]):
        other = [layouts(xp, g)[kind] for g in guesses]
        before = [to_numpy(g).copy() for g in other]
        grads, loss = loss_calc(other, labels)
        assert loss == expected, kind
        assert all(numpy.array_equal(to_numpy(a), to_numpy(b)) for a, b in zip(grads, expected_grads)), kind
        assert all(numpy.array_equal(to_numpy(g), b) for g, b in zip(other, before)), kind  # not mutated
    # A broadcast view (every step the same distribution): read-only, zero strides.
    row = guesses[0][:1]
    broadcast = xp.broadcast_to(row, (6, row.shape[1]))
    grads, loss = loss_calc([broadcast], [[1, 2]])
    expected_grads, expected = loss_calc([xp.ascontiguousarray(broadcast)], [[1, 2]])
    assert loss == expected and numpy.array_equal(to_numpy(grads[0]), to_numpy(expected_grads[0]))


def test_label_arrays_are_not_mutated_and_may_be_read_only():
    logits, labels = batch(seed=17, n=3)
    truths = [numpy.asarray(seq, dtype="int64") for seq in labels]
    for t in truths:
        t.flags.writeable = False
    before = [t.copy() for t in truths]
    grads, loss = CTC(from_logits=True)(logits, truths)
    assert loss == CTC(from_logits=True)(logits, labels)[1]
    assert all(numpy.array_equal(a, b) for a, b in zip(truths, before))


def test_mixed_dtypes_and_array_types_are_refused_naming_ctc(xp):
    g = good(xp)
    with pytest.raises(TypeError, match=r"Cannot calculate CTC: 'guesses' sequence 1 is a \w+ of float32, sequence 0 a \w+ of float64"):
        CTC()([g[0], g[1].astype("float32")], [[1], [2]])
    with pytest.raises(TypeError, match=r"Cannot calculate CTC: 'guesses' sequence 1 is a \w+ of float16"):
        CTC(from_logits=True)([g[0], g[1].astype("float16")], [[1], [2]])


@pytest.mark.parametrize("from_logits", [True, False])
def test_value_checks_are_one_transfer(monkeypatch, xp, from_logits):
    """Guesses and sample_weight checks fold into one Checks.run() (one device-to-host transfer)."""
    from thinc_losses_plus import _inputs

    runs = []
    original = _inputs.Checks.run

    def counting(self):
        runs.append(len(self._flags) + len(self._values))
        return original(self)

    monkeypatch.setattr(_inputs.Checks, "run", counting)
    logits, labels = batch(seed=18, n=4)
    guesses = as_guesses(xp, logits, from_logits)
    CTC(from_logits=from_logits)(guesses, labels, sample_weight=xp.asarray([1.0, 0.5, 2.0, 0.0]))
    assert len(runs) == 1 and runs[0] >= 3  # the guesses' check(s) and both sample_weight checks
    runs.clear()
    CTC(from_logits=from_logits).get_loss(guesses, labels)
    assert len(runs) == 1


def test_sample_weight_problems_are_found_by_the_one_check(xp):
    g, truths = good(xp), [[1], [2]]
    with pytest.raises(ValueError, match=r"Cannot calculate CTC: 'sample_weight' contains NaN or infinite values"):
        CTC()(g, truths, sample_weight=xp.asarray([1.0, numpy.nan]))
    with pytest.raises(TypeError, match=r"Cannot calculate CTC: 'sample_weight' must hold numbers"):
        CTC()(g, truths, sample_weight=numpy.asarray(["a", "b"]))
    with pytest.raises(ValueError, match=r"Cannot calculate CTC: 'sample_weight' must have shape"):
        CTC()([], [], sample_weight=numpy.ones((1,)))


def test_subclass_errors_name_the_configured_calculator():
    class SpeechCTC(CTC):
        name = "SpeechCTC"

    with pytest.raises(ValueError, match="Cannot calculate SpeechCTC: 'truths' sequence 0 contains label 9"):
        SpeechCTC()(good(numpy), [[9], [1]])
    with pytest.raises(ValueError, match="Cannot calculate SpeechCTC: 'guesses' rows must sum to 1"):
        SpeechCTC()([g * 0.5 for g in good(numpy)], [[1], [1]])
    with pytest.raises(TypeError, match="Cannot calculate SpeechCTC: 'guesses' sequence 1 is a"):
        SpeechCTC()([good(numpy)[0], good(numpy)[1].astype("float32")], [[1], [1]])


def test_functional_ctc_loss():
    """The maths on its own: an input it may not overwrite is left alone; infeasible rows are inf with gradient 0."""
    from thinc_losses_plus.functional.ctc import ctc_loss, ctc_min_steps

    y = numpy.asarray([[0.6, 0.4], [0.3, 0.7]])
    before = y.copy()
    labels = [numpy.asarray([1]), numpy.asarray([1, 1])]
    assert ctc_min_steps(labels).tolist() == [1, 3]
    grad, losses = ctc_loss(numpy, numpy.concatenate([y, y]), labels, [2, 2])
    assert numpy.array_equal(y, before)
    assert losses[0] == pytest.approx(-math.log(0.82), rel=1e-12) and losses[1] == math.inf
    assert not grad[2:].any() and grad[:2].any()
    grad, _ = ctc_loss(numpy, y, labels[:1], [2], scale=numpy.asarray([0.5]))
    full, _ = ctc_loss(numpy, y, labels[:1], [2])
    numpy.testing.assert_array_equal(grad, 0.5 * full)
    none, only = ctc_loss(numpy, y, labels[:1], [2], want_grad=False)
    assert none is None and only[0] == losses[0]


def test_docstrings_stand_alone():
    import thinc_losses_plus.ctc as ctc_module
    import thinc_losses_plus.functional.ctc as functional_ctc

    for module in (ctc_module, functional_ctc):
        text = " ".join([module.__doc__ or ""] + [getattr(module, n).__doc__ or "" for n in dir(module)])
        assert "module docstring" not in text


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logits_of_1e20_give_a_finite_exact_gradient(xp, dtype):
    """alpha + beta - log p of log-values near 1e21 cancelled to float32 noise of 1e14: exp overflowed to inf/NaN."""
    logits, labels = batch(seed=19, n=6, c=6, t_range=(3, 14))
    huge = [z * 1e20 for z in logits]
    grads, loss = CTC(from_logits=True, normalize=False)([xp.asarray(z.astype(dtype)) for z in huge], labels)
    assert numpy.isfinite(loss)
    reference, _ = CTC(from_logits=True, normalize=False)([z * 1e-16 for z in huge], labels)  # the same argmaxes, far apart
    for g, r in zip(grads, reference):
        g = to_numpy(g)
        assert numpy.isfinite(g).all()
        # Scores 1e20 apart: y and gamma are one-hot (the Viterbi path), so is every gradient row's support.
        assert set(numpy.unique(g).tolist()) <= {-1.0, 0.0, 1.0}
        numpy.testing.assert_allclose(g, r.round(), atol=0)


def test_logits_too_wide_for_log_space_are_refused(xp):
    z = xp.asarray(numpy.random.default_rng(20).normal(size=(12, 4)).astype("float32") * 1e30)
    with pytest.raises(ValueError, match=r"Cannot calculate CTC: 'guesses' are logits spanning .* over 12 steps, too wide"):
        CTC(from_logits=True)([z], [[1, 2]])


# The batched recursion ------------------------------------------------------------


def ragged_batch(rng, *, n_classes, blank, max_t=30, max_len=12):
    """Random lengths (1..max_t steps), labels of 0..max_len labels with adjacent repeats, some infeasible."""
    logits, labels = [], []
    for _ in range(int(rng.integers(1, 9))):
        t = int(rng.integers(1, max_t + 1))
        others = [c for c in range(n_classes) if c != blank]
        seq = [int(c) for c in rng.choice(others, size=int(rng.integers(0, max_len + 1)))]
        if len(seq) > 1 and rng.random() < 0.5:
            seq[1] = seq[0]  # an adjacent repeat: needs a blank between
        logits.append(rng.normal(scale=float(rng.choice([0.5, 2.0, 6.0])), size=(t, n_classes)))
        labels.append(seq)
    return logits, labels


@pytest.mark.parametrize("seed", range(12))
def test_random_ragged_batches_match_torch(seed):
    """Every lattice row, running range and direction: batches of mixed lengths against PyTorch."""
    rng = numpy.random.default_rng(100 + seed)
    n_classes = int(rng.integers(2, 9))
    blank = int(rng.integers(0, n_classes))
    logits, labels = ragged_batch(rng, n_classes=n_classes, blank=blank)
    from_logits, normalize = bool(seed % 2), bool(seed % 3)
    loss_calc = CTC(blank=blank, zero_infinity=True, from_logits=from_logits, normalize=normalize)
    grads, loss = loss_calc(as_guesses(numpy, logits, from_logits), labels)
    reduction = "mean" if normalize else "sum"
    expected_loss, expected_grads = torch_ctc(logits, labels, blank=blank, reduction=reduction, zero_infinity=True)
    assert loss == pytest.approx(expected_loss, rel=1e-10, abs=1e-12)
    for g, e in zip(grads, expected_grads, strict=True):
        numpy.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_narrow_logit_range_takes_the_fast_path_with_the_same_numbers(dtype):
    """A known logit range replaces each row's maximum and the per-step maximum by one number each."""
    from thinc_losses_plus.functional.ctc import ctc_loss

    rng = numpy.random.default_rng(21)
    for scale in (0.5, 3.0, 40.0, 1e3):  # narrow, narrow, wide for float32, wide
        logits, labels = ragged_batch(rng, n_classes=6, blank=0, max_t=40)
        labels = [numpy.asarray(seq, dtype="int64") for seq in labels]
        z = numpy.concatenate(logits).astype(dtype) * scale
        steps = [len(x) for x in logits]
        plain = ctc_loss(numpy, z, labels, steps, from_logits=True)
        fast = ctc_loss(numpy, z, labels, steps, from_logits=True, logit_range=(float(z.min()), float(z.max())))
        tol = 1e-5 if dtype == "float32" else 1e-12
        finite = numpy.isfinite(plain[1])
        numpy.testing.assert_array_equal(finite, numpy.isfinite(fast[1]))
        numpy.testing.assert_allclose(fast[1][finite], plain[1][finite], rtol=tol)
        numpy.testing.assert_allclose(fast[0], plain[0], rtol=tol * 10, atol=tol * 10)


def test_loss_only_runs_alpha_and_agrees():
    from thinc_losses_plus.functional.ctc import ctc_loss

    rng = numpy.random.default_rng(22)
    logits, labels = ragged_batch(rng, n_classes=5, blank=2)
    labels = [numpy.asarray(seq, dtype="int64") for seq in labels]
    z, steps = numpy.concatenate(logits), [len(x) for x in logits]
    _, with_grad = ctc_loss(numpy, z, labels, steps, blank=2, from_logits=True)
    none, only = ctc_loss(numpy, z, labels, steps, blank=2, from_logits=True, want_grad=False)
    assert none is None
    numpy.testing.assert_allclose(only, with_grad, rtol=1e-12)


def test_long_sequences_with_wide_logits_use_the_per_step_maximum():
    """T^2 times the logit range past the rounding bound: normalised by each step's best state."""
    from thinc_losses_plus.functional.ctc import _bounded_log_values

    assert _bounded_log_values("float32", 200, 30.0) and not _bounded_log_values("float32", 2000, 30.0)
    assert not _bounded_log_values("float64", 10, None)
    rng = numpy.random.default_rng(23)
    z = rng.normal(scale=300.0, size=(400, 4))
    labels = [[1, 2, 3, 1] * 10]
    grads, loss = CTC(from_logits=True, normalize=False)([z.astype("float32")], labels)
    expected_loss, expected_grads = torch_ctc([z.astype("float32").astype("float64")], labels, reduction="sum")
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    numpy.testing.assert_allclose(grads[0], expected_grads[0], atol=2e-3)
