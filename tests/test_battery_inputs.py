"""Input seams, checked on every calculator of the battery (see ``battery.py``).

Each check here was a defect found in one calculator, turned into a rule
for all of them:

* memory layout: Fortran order, slices, negative strides, read-only and
  broadcast views give the bits of a C-contiguous copy (a Fortran-ordered
  gradient once lost its ``-target`` term);
* ``str`` subclasses (``numpy.str_``) are string labels;
* large finite inputs (1e20 in float32) give a finite result or a named error;
* bad inputs (None, NaN, wrong ``sample_weight`` length, integer guesses,
  malformed ``Ragged``, mixed-dtype sequences) raise a ValueError/TypeError
  naming the calculator the user configured.
"""
import numpy
import pytest
from thinc.types import Ragged

from battery import inputs, same, snapshot, tree_map
from cases import all_cases
from conftest import to_numpy

CASES = all_cases()
IDS = [c.key for c in CASES]


def _map_arrays(fn, obj):
    """Apply ``fn`` to every array (float and int) of a guesses/truths structure."""
    if isinstance(obj, Ragged):
        return Ragged(fn(obj.dataXd), obj.lengths)
    if isinstance(obj, tuple):
        return tuple(_map_arrays(fn, o) for o in obj)
    if isinstance(obj, list):
        return [_map_arrays(fn, o) for o in obj]
    if hasattr(obj, "dtype") and hasattr(obj, "shape") and obj.ndim >= 1:
        return fn(obj)
    return obj


def _fortran(xp, x):
    return xp.asfortranarray(x) if x.ndim > 1 else x


def _negative_strides(xp, x):
    flipped = xp.ascontiguousarray(x[::-1, ::-1] if x.ndim > 1 else x[::-1])
    return flipped[::-1, ::-1] if x.ndim > 1 else flipped[::-1]


def _sliced(xp, x):
    wide = xp.zeros(x.shape[:-1] + (x.shape[-1] * 2,), dtype=x.dtype)
    wide[..., ::2] = x
    return wide[..., ::2]


def _read_only(xp, x):
    if xp is not numpy:
        return x
    y = x.copy()
    y.setflags(write=False)
    return y


def _broadcast(xp, x):
    """Every example equal to the first: a view with stride 0 on the first axis."""
    if x.shape[0] == 0:
        return x
    return xp.broadcast_to(x[:1], x.shape)


LAYOUTS = {
    "fortran": _fortran,
    "negative-strides": _negative_strides,
    "sliced": _sliced,
    "read-only": _read_only,
    "broadcast": _broadcast,
}


def _contiguous(xp, obj):
    return _map_arrays(lambda a: xp.array(a, copy=True, order="C"), obj)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_any_layout_gives_the_bits_of_a_contiguous_copy(case, layout, xp):
    loss_calc = case.build()
    guesses, truths = inputs(case, xp, "float32")
    transform = LAYOUTS[layout]
    if layout == "broadcast":
        # Broadcasting makes every example equal the first; truths and guesses alike.
        if isinstance(guesses, Ragged) or isinstance(guesses, list) or isinstance(truths, list):
            pytest.skip("examples are sequences: a broadcast view of one row is not a batch of them")
    odd_guesses = _map_arrays(lambda a: transform(xp, a), guesses)
    odd_truths = _map_arrays(lambda a: transform(xp, a), truths)
    before = snapshot(odd_guesses), snapshot(odd_truths)
    try:
        expected = loss_calc(_contiguous(xp, odd_guesses), _contiguous(xp, odd_truths))
    except ValueError:
        # e.g. a broadcast batch that is not valid for this loss: it must then fail the same way.
        with pytest.raises(ValueError):
            loss_calc(odd_guesses, odd_truths)
        return
    got = loss_calc(odd_guesses, odd_truths)
    assert same(snapshot(got[0]), snapshot(expected[0])), f"{case.key}: {layout} guesses change the gradient bits"
    assert got[1] == expected[1], f"{case.key}: {layout} guesses change the loss"
    assert same(snapshot(odd_guesses), before[0]) and same(snapshot(odd_truths), before[1])


def _is_str_labels(truths):
    return isinstance(truths, list) and truths and all(isinstance(t, str) for t in truths)


def _str_subclass(truths):
    if _is_str_labels(truths):
        return [numpy.str_(t) for t in truths]
    if isinstance(truths, list) and truths and all(isinstance(t, list) and all(isinstance(x, str) for x in t) for t in truths):
        return [[numpy.str_(x) for x in t] for t in truths]
    return None


STR_CASES = [c for c in CASES if _str_subclass(inputs(c, numpy)[1]) is not None]


def test_some_cases_have_string_labels():
    assert len(STR_CASES) >= 4, [c.key for c in STR_CASES]


@pytest.mark.parametrize("case", STR_CASES, ids=[c.key for c in STR_CASES])
def test_str_subclasses_are_string_labels(case, xp):
    loss_calc = case.build()
    guesses, truths = inputs(case, xp, "float32")
    expected = loss_calc(guesses, truths)
    got = loss_calc(guesses, _str_subclass(truths))
    assert same(snapshot(got[0]), snapshot(expected[0]))
    assert got[1] == expected[1]


def _scaled_guesses(guesses, factor):
    return tree_map(lambda a: a * factor, guesses)


@pytest.mark.parametrize("what", ["guesses", "truths"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_large_finite_inputs_give_finite_results_or_a_named_error(case, what):
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32")
    if what == "guesses":
        guesses = _scaled_guesses(guesses, numpy.float32(1e20))
    else:
        if not _leaves_any(truths):
            pytest.skip("no float truths to scale")
        truths = tree_map(lambda a: a * numpy.float32(1e20), truths)
    with numpy.errstate(all="ignore"):
        try:
            grad, loss = loss_calc(guesses, truths)
        except (ValueError, TypeError) as err:
            assert f"Cannot calculate {loss_calc.name}" in str(err), str(err)
            return
    assert numpy.isfinite(loss), f"{case.key}: 1e20 {what} give loss {loss}"
    for g in _leaves_any(grad):
        assert numpy.isfinite(to_numpy(g)).all(), f"{case.key}: 1e20 {what} give a non-finite gradient"


def _leaves_any(obj):
    out = []
    tree_map(lambda a: out.append(a) or a, obj)
    return out


def _error_names_calculator(loss_calc, call):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    message = str(info.value)
    assert any(f"Cannot calculate {name}" in message for name in _configured_names(loss_calc)), message
    return message


def _configured_names(loss_calc):
    """The calculator's name, and those of the sub-losses the user configured in it (WeightedSum)."""
    names = [loss_calc.name]
    for sub in getattr(loss_calc, "losses", {}).values():
        names.extend(_configured_names(sub))
    return names


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_none_guesses_name_the_calculator(case):
    loss_calc = case.build()
    _, truths = inputs(case, numpy, "float32")
    _error_names_calculator(loss_calc, lambda: loss_calc(None, truths))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_nan_guesses_name_the_calculator(case):
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32")

    def poison(a):
        a = a.copy()
        if a.size:
            a.reshape(-1)[a.size // 2] = numpy.nan
        return a

    _error_names_calculator(loss_calc, lambda: loss_calc(tree_map(poison, guesses), truths))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_integer_guesses_name_the_calculator(case):
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32")
    integers = tree_map(lambda a: (a * 0).astype("int32"), guesses)
    _error_names_calculator(loss_calc, lambda: loss_calc(integers, truths))


WEIGHTED = [c for c in CASES if c.weightable]


@pytest.mark.parametrize("case", WEIGHTED, ids=[c.key for c in WEIGHTED])
def test_sample_weight_of_the_wrong_length_names_the_calculator(case):
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32")
    _error_names_calculator(
        loss_calc, lambda: loss_calc(guesses, truths, sample_weight=numpy.ones((case.n + 1,), dtype="f"))
    )


@pytest.mark.parametrize("case", WEIGHTED, ids=[c.key for c in WEIGHTED])
def test_sample_weight_of_shape_n_1_equals_shape_n(case):
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32")
    weights = numpy.random.default_rng(1).uniform(0.5, 2.0, size=case.n).astype("f")
    flat = loss_calc(guesses, truths, sample_weight=weights)
    column = loss_calc(guesses, truths, sample_weight=weights.reshape(-1, 1))
    assert same(snapshot(flat[0]), snapshot(column[0]))
    assert flat[1] == column[1]


RAGGED = [c for c in CASES if isinstance(inputs(c, numpy)[0], Ragged)]


def test_some_cases_take_ragged_guesses():
    assert RAGGED


@pytest.mark.parametrize("case", RAGGED, ids=[c.key for c in RAGGED])
def test_malformed_ragged_names_the_calculator(case):
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32")
    lengths = to_numpy(guesses.lengths).copy()
    lengths[0] += 4
    bad = Ragged(guesses.dataXd, lengths)
    message = _error_names_calculator(loss_calc, lambda: loss_calc(bad, truths))
    assert "lengths" in message


SEQUENCES = [c for c in CASES if isinstance(inputs(c, numpy)[0], list) and len(inputs(c, numpy)[0]) > 1]


def test_some_cases_take_lists_of_sequences():
    assert len(SEQUENCES) >= 2, [c.key for c in SEQUENCES]


@pytest.mark.parametrize("case", SEQUENCES, ids=[c.key for c in SEQUENCES])
def test_mixed_dtype_sequences_name_the_calculator(case):
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32")
    mixed = [g.astype("float64") if i == 1 else g for i, g in enumerate(guesses)]
    _error_names_calculator(loss_calc, lambda: loss_calc(mixed, truths))


@pytest.mark.parametrize("case", SEQUENCES, ids=[c.key for c in SEQUENCES])
def test_sequences_of_different_widths_name_the_calculator(case):
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32")
    wider = [numpy.concatenate([g, g[:, :1]], axis=1) if i == 1 else g for i, g in enumerate(guesses)]
    _error_names_calculator(loss_calc, lambda: loss_calc(wider, truths))


def _int_label_case(case) -> bool:
    """A case with 2-d guesses and a 1-d integer label array, whose width the calculator
    does not fix (no ``names``): what :func:`test_narrow_label_dtypes_equal_int64` widens."""
    guesses, truths = inputs(case, numpy, "float32")
    return (
        isinstance(guesses, numpy.ndarray)
        and guesses.ndim == 2
        and guesses.shape[0] > 0
        and isinstance(truths, numpy.ndarray)
        and truths.ndim == 1
        and truths.dtype.kind in "iu"
        and not getattr(getattr(case.build(), "labels", None), "names", None)
    )


INT_LABELS = [c for c in CASES if _int_label_case(c)]


def test_some_cases_take_integer_label_arrays():
    assert len(INT_LABELS) >= 5, [c.key for c in INT_LABELS]


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "uint8", "uint16"])
@pytest.mark.parametrize("case", INT_LABELS, ids=[c.key for c in INT_LABELS])
def test_narrow_label_dtypes_equal_int64(case, dtype):
    """Labels of any integer dtype give what int64 labels give, a negative label included.

    The defect: read as unsigned, an int8 -1 is 255, a valid class of 300
    columns, so one max() "checked" both bounds and scored class 255. Here
    the guesses get 300 columns (zero columns appended: probabilities still
    sum to 1, logits stay finite), and one label is -1 (or, unsigned, the
    dtype's largest value, which is out of range only when C is smaller).
    """
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32")
    wide = numpy.zeros((guesses.shape[0], 300), dtype=guesses.dtype)
    wide[:, : guesses.shape[1]] = guesses
    labels = truths.astype("int64")
    labels[0] = -1 if numpy.dtype(dtype).kind == "i" else numpy.iinfo(dtype).max

    def result(y):
        try:
            return snapshot(loss_calc(wide, y))
        except (ValueError, TypeError) as error:
            return type(error)

    expected = result(labels)
    got = result(labels.astype(dtype))
    assert same(got, expected), (dtype, got if isinstance(got, type) else "numbers", expected)
