"""The same checks for every registered calculator (see ``battery.py``)."""
import json

import numpy
import pytest
from hypothesis import given, settings, strategies as st
from thinc.types import Ragged

from battery import (
    assert_loss_and_grad_close,
    inputs,
    leaves,
    numeric_gradient,
    per_example_array,
    pickled,
    same,
    snapshot,
    take,
    to_host,
)
from cases import all_cases
from conftest import to_numpy
from golden_values import decode, path_for
from thinc_losses_plus.entry_points import loss_names

CASES = all_cases()
IDS = [c.key for c in CASES]


def tol(dtype):
    return {"float16": 2e-2, "float32": 1e-5, "float64": 1e-10}[dtype]


def test_every_registered_name_has_cases():
    covered = {c.name for c in CASES}
    missing = sorted(set(loss_names()) - covered)
    assert not missing, f"registered names without battery cases: {missing}"
    unknown = sorted(covered - set(loss_names()))
    assert not unknown, f"battery cases for names that are not registered: {unknown}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_call_equals_parts(case, xp):
    loss_calc = case.build()
    guesses, truths = inputs(case, xp, "float32")
    grad, loss = loss_calc(guesses, truths)
    assert isinstance(loss, float)
    assert numpy.isfinite(loss)
    assert same(snapshot(loss_calc.get_grad(guesses, truths)), snapshot(grad))
    assert loss_calc.get_loss(guesses, truths) == loss


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_type_shape_dtype(case, xp):
    loss_calc = case.build()
    for dtype in case.dtypes:
        guesses, truths = inputs(case, xp, dtype)
        grad, loss = loss_calc(guesses, truths)
        assert type(grad) is type(guesses)
        g_leaves, x_leaves = leaves(grad), leaves(guesses)
        assert len(g_leaves) == len(x_leaves)
        for g, x in zip(g_leaves, x_leaves):
            assert type(g) is type(x)
            assert g.shape == x.shape
            assert g.dtype == x.dtype
            assert bool(xp.isfinite(g).all())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_no_mutation_and_deterministic(case, xp):
    loss_calc = case.build()
    guesses, truths = inputs(case, xp, "float32")
    before = snapshot(guesses), snapshot(truths)
    first = loss_calc(guesses, truths)
    assert same(snapshot(guesses), before[0])
    assert same(snapshot(truths), before[1])
    second = loss_calc(guesses, truths)
    assert same(snapshot(first[0]), snapshot(second[0]))
    assert first[1] == second[1]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_normalize_divides_by_n(case, xp):
    guesses, truths = inputs(case, xp)
    grad_n, loss_n = case.build(normalize=True)(guesses, truths)
    grad_s, loss_s = case.build(normalize=False)(guesses, truths)
    n = case.n
    if case.normalize_divisor is not None:
        extra = numpy.asarray(case.normalize_divisor(to_host_truths(truths)), dtype="float64")
        per_s = per_example_array(case.build(normalize=False).get_loss_per_example(guesses, truths))
        numpy.testing.assert_allclose(loss_n * n, (per_s / extra).sum(), rtol=1e-10, atol=1e-12)
        for i in range(n):
            for a, b in zip(leaves(to_host(take(grad_n, [i]))), leaves(to_host(take(grad_s, [i])))):
                numpy.testing.assert_allclose(a * n * extra[i], b, rtol=1e-10, atol=1e-12)
        return
    loss_divisor = n if case.loss_normalized else 1
    numpy.testing.assert_allclose(loss_n * loss_divisor, loss_s, rtol=1e-10, atol=1e-12)
    for a, b in zip(leaves(to_host(grad_n)), leaves(to_host(grad_s))):
        numpy.testing.assert_allclose(a * n, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_per_example_losses_sum_to_loss(case, xp):
    guesses, truths = inputs(case, xp)
    loss_calc = case.build(normalize=False)
    per_example = loss_calc.get_loss_per_example(guesses, truths)
    values = per_example_array(per_example)
    if isinstance(per_example, list):
        assert len(per_example) == case.n
    elif isinstance(guesses, Ragged):  # one loss per row; the sequences only set n
        assert per_example.shape == (guesses.dataXd.shape[0],)
    else:
        assert per_example.shape == (case.n,)
    numpy.testing.assert_allclose(values.sum(), loss_calc.get_loss(guesses, truths), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_per_element_losses(case, xp):
    """PyTorch's ``reduction="none"``: for elementwise losses one term per element of the
    guesses, summing over each row to its per-example loss, 0 where masked or weighted 0;
    for the others the per-example losses. Unnormalised, and the inputs are never changed."""
    guesses, truths = inputs(case, xp)
    loss_calc = case.build(normalize=False)
    before = snapshot(guesses), snapshot(truths)
    per_element = loss_calc.get_loss_per_element(guesses, truths)
    assert same(snapshot(guesses), before[0]) and same(snapshot(truths), before[1])
    assert same(snapshot(case.build().get_loss_per_element(guesses, truths)), snapshot(per_element))
    per_example = loss_calc.get_loss_per_example(guesses, truths)
    if not loss_calc.elementwise:
        assert same(snapshot(per_element), snapshot(per_example))
        return
    first = leaves(guesses)[0]
    assert type(per_element) is type(first) and per_element.shape == first.shape
    assert per_element.dtype == per_example.dtype
    values = to_numpy(per_element).astype("float64")
    rows = values.reshape(case.n, -1).sum(axis=1)
    numpy.testing.assert_allclose(rows, per_example_array(per_example), rtol=1e-10, atol=1e-12)
    missing = case.settings.get("missing_value")
    if missing is not None and getattr(truths, "shape", None) == first.shape:
        masked = to_numpy(truths) == missing
        assert masked.any() and (values[masked] == 0).all()
    if case.weightable:
        mask = numpy.random.default_rng(7).uniform(size=first.shape) < 0.5
        weighted = loss_calc.get_loss_per_element(guesses, truths, sample_weight=xp.asarray(mask.astype("float64")))
        weighted = to_numpy(weighted).astype("float64")
        assert (weighted[~mask] == 0).all()
        numpy.testing.assert_allclose(weighted, values * mask, rtol=1e-12, atol=1e-300)
        rows_weights = numpy.random.default_rng(8).uniform(0.0, 2.0, size=case.n)
        by_row = loss_calc.get_loss_per_element(guesses, truths, sample_weight=xp.asarray(rows_weights))
        expected = values * rows_weights.reshape((-1,) + (1,) * (values.ndim - 1))
        numpy.testing.assert_allclose(to_numpy(by_row).astype("float64"), expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("case", [c for c in CASES if c.weightable], ids=[c.key for c in CASES if c.weightable])
def test_sample_weight(case, xp):
    guesses, truths = inputs(case, xp)
    loss_calc = case.build(normalize=False)
    plain = loss_calc(guesses, truths)
    ones = loss_calc(guesses, truths, sample_weight=xp.ones((case.n,)))
    assert_loss_and_grad_close(plain, ones, rtol=1e-12, atol=1e-12)
    weights = numpy.random.default_rng(3).uniform(0.0, 2.0, size=case.n)
    per_example = per_example_array(loss_calc.get_loss_per_example(guesses, truths))
    weighted = per_example_array(
        loss_calc.get_loss_per_example(guesses, truths, sample_weight=xp.asarray(weights))
    )
    numpy.testing.assert_allclose(weighted, per_example * weights, rtol=1e-10, atol=1e-12)
    # The gradient of a weighted sum is the weighted sum of single-example gradients.
    grad_w, _ = loss_calc(guesses, truths, sample_weight=xp.asarray(weights))
    for i in range(case.n):
        one_hot = numpy.zeros(case.n)
        one_hot[i] = 1.0
        grad_i, _ = loss_calc(guesses, truths, sample_weight=xp.asarray(one_hot))
        if i == 0:
            total = [g * weights[i] for g in leaves(to_host(grad_i))]
        else:
            total = [t + g * weights[i] for t, g in zip(total, leaves(to_host(grad_i)))]
    for a, b in zip(leaves(to_host(grad_w)), total):
        numpy.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if c.permutable], ids=[c.key for c in CASES if c.permutable])
def test_batch_permutation_invariance(case, xp):
    guesses, truths = inputs(case, xp)
    order = numpy.random.default_rng(5).permutation(case.n)
    grad, loss = case.build()(guesses, truths)
    grad_p, loss_p = case.build()(take(guesses, order), take(truths, order))
    numpy.testing.assert_allclose(loss_p, loss, rtol=1e-10, atol=1e-12)
    for a, b in zip(leaves(to_host(grad_p)), leaves(to_host(take(grad, order)))):
        numpy.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_empty_batch(case, xp):
    guesses, truths = inputs(case, xp, n=0)
    grad, loss = case.build()(guesses, truths)
    assert loss == 0.0 and isinstance(loss, float)
    assert all(g.size == 0 for g in leaves(grad))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pickle_round_trip(case, xp):
    loss_calc = case.build()
    guesses, truths = inputs(case, xp)
    clone = pickled(loss_calc)
    assert type(clone) is type(loss_calc)
    assert same(snapshot(clone(guesses, truths)[0]), snapshot(loss_calc(guesses, truths)[0]))


@pytest.mark.parametrize("case", [c for c in CASES if c.gradient != "none"], ids=[c.key for c in CASES if c.gradient != "none"])
def test_finite_differences(case):
    guesses, truths = inputs(case, numpy, "float64")
    loss_calc = case.build()
    grad = leaves(to_host(loss_calc.get_grad(guesses, truths)))

    def loss_fn(g):
        return loss_calc.get_loss(g, truths)

    for leaf, k, numeric in numeric_gradient(case, loss_fn, guesses):
        analytic = grad[leaf].reshape(-1)[k]
        assert abs(analytic - numeric) <= case.fd_atol + case.fd_rtol * abs(numeric), (
            f"{case.key}: d loss/d x[{leaf}][{k}] analytic {analytic} vs numeric {numeric}"
        )


def test_cases_without_fd_check_say_why():
    for case in CASES:
        if case.gradient == "none":
            assert case.why, f"{case.key} skips the finite-difference check without a reason"


@pytest.mark.parametrize("case", [c for c in CASES if c.reference], ids=[c.key for c in CASES if c.reference])
def test_against_float64_reference(case, xp):
    guesses, truths = inputs(case, xp)
    per_example = per_example_array(case.build(normalize=False).get_loss_per_example(guesses, truths))
    expected = numpy.asarray(case.reference(to_host(guesses), to_host_truths(truths), case.settings), dtype="float64")
    numpy.testing.assert_allclose(per_example, expected.reshape(-1), rtol=1e-9, atol=1e-12)


def to_host_truths(truths):
    if isinstance(truths, list):
        return [to_host_truths(t) for t in truths]
    if isinstance(truths, tuple):
        return tuple(to_host_truths(t) for t in truths)
    if hasattr(truths, "dtype"):
        return to_numpy(truths)
    return truths


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dtypes_agree(case, xp):
    """float32 (and float16 where supported) agree with float64 within the dtype's precision."""
    exact = case.build()(*inputs(case, xp, "float64"))
    for dtype in case.dtypes:
        if dtype != "float64":
            low = case.build()(*inputs(case, xp, dtype))
            assert_loss_and_grad_close(low, exact, rtol=tol(dtype) * 100, atol=tol(dtype) * 10)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_golden(case):
    """Released versions are frozen: the pinned numbers never move."""
    path = path_for(case.name)
    assert path.exists(), f"no golden values for {case.name}: run python tests/golden_values.py"
    entry = json.loads(path.read_text()).get(case.id)
    assert entry is not None, f"no golden values for {case.key}: run python tests/golden_values.py"
    assert entry["settings"] == json.loads(json.dumps(case.settings))
    guesses, truths = decode(entry["guesses"]), decode(entry["truths"])
    grad, loss = case.build()(guesses, truths)
    numpy.testing.assert_allclose(loss, entry["loss"], rtol=1e-9, atol=1e-12)
    for a, b in zip(leaves(to_host(grad)), leaves(decode(entry["grad"])), strict=True):
        numpy.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(case=st.sampled_from(CASES), n=st.integers(1, 9), seed=st.integers(0, 2**31))
def test_property_finite_for_valid_inputs(case, n, seed):
    guesses, truths = inputs(case, numpy, "float32", n=n, seed=seed)
    grad, loss = case.build()(guesses, truths)
    assert numpy.isfinite(loss)
    assert all(numpy.isfinite(g).all() for g in leaves(grad))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backends_agree(case, xp):
    """Each backend gives numpy's numbers (trivially true on numpy alone)."""
    host = case.build()(*inputs(case, numpy, "float64"))
    here = case.build()(*inputs(case, xp, "float64"))
    assert_loss_and_grad_close(here, host, rtol=1e-9, atol=1e-12)


#: Examples per call for the checks at block sizes: past the one-block floors of the row-blocked
#: maths (functional/blocks.py), so that several blocks, borrowed scratch and the streamed
#: branches run (the battery's own few rows take the one-block paths).
BLOCK_SIZE_N = 3000
#: Columns of the wide variant: past the kernels' width thresholds (the sparse kernel's
#: second gather, PartialLabel's transposed copy, ...), which the cases' few columns never reach.
WIDE = 300


def widened(guesses, truths, width: int):
    """``(guesses, truths)`` with zero columns appended up to ``width`` where that keeps them
    valid (a 2-d float array of guesses; truths that are labels, or an array of the guesses'
    shape, widened alike), else None. Zero columns keep probability rows summing to 1, logits
    and scores finite, targets and codes meaning "not this class"."""
    if not (hasattr(guesses, "ndim") and guesses.ndim == 2 and guesses.dtype.kind == "f" and guesses.shape[1] < width):
        return None

    def wide(x):
        out = numpy.zeros((x.shape[0], width), dtype=x.dtype)
        out[:, : x.shape[1]] = x
        return out

    if hasattr(truths, "shape") and tuple(truths.shape) == tuple(guesses.shape):
        return wide(guesses), wide(truths)
    if isinstance(truths, list) or (hasattr(truths, "ndim") and truths.ndim == 1 and truths.dtype.kind in "iu"):
        return wide(guesses), truths
    return None


@pytest.mark.parametrize("shape", ["rows", "wide"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_no_mutation_and_call_equals_parts_at_block_sizes(case, shape):
    """The defect: a kernel branch taken only past a width threshold wrote the gradient over
    the caller's guesses (caught before it shipped). Here every calculator gets a batch
    large enough for its multi-block paths (and, where zero columns keep the inputs valid, one
    of WIDE columns): the inputs stay as they were, a second call gives the same bits, and
    ``__call__`` gives the bits of ``get_grad`` and ``get_loss``."""
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32", n=BLOCK_SIZE_N if shape == "rows" else 64)
    if shape == "wide":
        made = widened(guesses, truths, WIDE)
        if made is None:
            pytest.skip("inputs that zero columns cannot widen (sequences, pairs, dense rows of another shape)")
        guesses, truths = made
        if getattr(loss_calc, "names", None) is not None:
            pytest.skip("names fix the number of columns")
    before = snapshot(guesses), snapshot(truths)
    try:
        grad, loss = loss_calc(guesses, truths)
    except ValueError as error:
        if shape == "rows":
            raise
        # per-column settings (class weights, pos_weight) or a label convention (-1/1) that
        # zero columns break: the calculator refuses the widened inputs, as it should
        pytest.skip(f"the case's settings fix its columns: {error}")
    assert same(snapshot(guesses), before[0]) and same(snapshot(truths), before[1])
    again = loss_calc(guesses, truths)
    assert same(snapshot(again[0]), snapshot(grad)) and again[1] == loss
    assert same(snapshot(loss_calc.get_grad(guesses, truths)), snapshot(grad))
    assert loss_calc.get_loss(guesses, truths) == loss
