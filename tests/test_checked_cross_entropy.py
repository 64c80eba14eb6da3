"""The checked kernel of the sparse cross-entropy (``functional/checked_cross_entropy.py``):
its folded checks accept exactly what the general path's checks accept."""
import numpy
import pytest

from thinc_losses_plus.functional.checked_cross_entropy import checked_cross_entropy_with_integer_labels, sum_bounds
from thinc_losses_plus.functional.softmax import distribution_tolerance


def _around(x, dtype, ulps):
    """Every number of ``dtype`` within ``ulps`` steps of ``x`` (rounded to the dtype)."""
    centre = numpy.asarray(x, dtype=dtype)
    info = numpy.iinfo(numpy.dtype(f"int{8 * numpy.dtype(dtype).itemsize}"))
    bits = centre.view(f"int{8 * numpy.dtype(dtype).itemsize}")
    steps = numpy.arange(-ulps, ulps + 1, dtype=info.dtype)
    return (bits + steps).view(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])  # the kernel's dtypes
@pytest.mark.parametrize("n_classes", [2, 10, 50, 1000, 5_000_000])  # the last: a tolerance past 1/2
def test_sum_bounds_accept_exactly_what_the_tolerance_accepts(dtype, n_classes):
    atol = distribution_tolerance(n_classes, numpy.dtype(dtype))
    low, high = sum_bounds(atol, dtype)
    for edge in (1.0 - atol, 1.0 + atol):
        sums = _around(edge, dtype, 3000)
        by_bounds = (sums >= low) & (sums <= high)
        by_tolerance = numpy.abs(sums - numpy.asarray(1.0, dtype=dtype)) <= atol  # the general path's test
        numpy.testing.assert_array_equal(by_bounds, by_tolerance)
        assert by_bounds.any() and not by_bounds.all(), "the window straddles the bound"


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf])
def test_non_finite_row_sums_fail_the_folded_check(bad):
    p = numpy.full((4, 5), 0.2, dtype="float32")
    p[2, 1] = bad
    assert checked_cross_entropy_with_integer_labels(numpy, p, numpy.zeros(4, dtype="int64")) is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rows_just_inside_and_outside_the_tolerance(dtype):
    """One column: the row sum is the guess itself, so a row can sit exactly on a bound."""
    low, high = sum_bounds(distribution_tolerance(1, numpy.dtype(dtype)), dtype)
    labels = numpy.zeros(2, dtype="int64")
    nudged = {
        low: True, numpy.nextafter(low, numpy.zeros((), dtype)): False,
        high: True, numpy.nextafter(high, numpy.full((), 2, dtype)): False,
    }
    for row_sum, accepted in nudged.items():
        p = numpy.full((2, 1), row_sum, dtype=dtype)
        assert (checked_cross_entropy_with_integer_labels(numpy, p, labels) is not None) is accepted


def _probabilities(n, c, dtype, seed=0):
    rng = numpy.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n, c))
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(dtype), rng.integers(0, c, size=n)


# (n, c): a textcat, a tagger batch, and one past STREAM_BYTES (the streamed path)
SHAPES = [(3, 1), (256, 10), (4096, 50), (2100, 1001)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("divisor", [1, 256, 3])  # none, a power of two (a product), another (a division)
@pytest.mark.parametrize("label_dtype", ["int64", "int32", "uint8"])
def test_kernel_gives_the_general_functions_bits(shape, dtype, divisor, label_dtype):
    from thinc_losses_plus.functional.softmax import softmax_cross_entropy_with_integer_labels

    n, c = shape
    if label_dtype == "uint8" and c > 255:
        pytest.skip("labels beyond uint8")
    p, y = _probabilities(n, c, dtype)
    labels = y.astype(label_dtype)
    before = p.copy()
    grad, log_gold = checked_cross_entropy_with_integer_labels(numpy, p, labels, divisor=divisor)
    ref_grad, ref_losses = softmax_cross_entropy_with_integer_labels(numpy, p.copy(), y, divisor=divisor)
    assert grad.dtype == p.dtype and grad.tobytes() == ref_grad.tobytes()
    assert (-log_gold).tobytes() == ref_losses.tobytes()
    assert p.tobytes() == before.tobytes(), "the guesses are not written"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("divisor", [1, 256, 3])
def test_nll_kernel_gives_the_general_functions_bits(shape, dtype, divisor):
    from thinc_losses_plus.categorical import LOG_PROB_ATOL
    from thinc_losses_plus.functional.checked_cross_entropy import checked_nll_with_integer_labels
    from thinc_losses_plus.functional.nll import nll_with_integer_labels

    p, y = _probabilities(*shape, "float64")
    log_p = numpy.log(p).astype(dtype)
    grad, gold = checked_nll_with_integer_labels(numpy, log_p, y, atol=LOG_PROB_ATOL, divisor=divisor)
    ref_grad, ref_losses = nll_with_integer_labels(numpy, log_p, y, divisor=divisor)
    assert grad.dtype == log_p.dtype and grad.tobytes() == ref_grad.tobytes()
    assert (-gold).tobytes() == ref_losses.tobytes()


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf, 1e-3])
def test_nll_kernel_leaves_bad_log_probabilities_to_the_general_path(bad):
    from thinc_losses_plus.categorical import LOG_PROB_ATOL, SparseCategoricalCrossentropy
    from thinc_losses_plus.functional.checked_cross_entropy import checked_nll_with_integer_labels

    log_p = numpy.log(numpy.full((4, 5), 0.2))
    log_p[1, 3] = bad
    labels = numpy.zeros(4, dtype="int64")
    assert checked_nll_with_integer_labels(numpy, log_p, labels, atol=LOG_PROB_ATOL) is None
    with pytest.raises(ValueError, match="SparseCategoricalCrossentropy.*guesses"):
        SparseCategoricalCrossentropy(from_log_probs=True)(log_p, labels)


@pytest.mark.parametrize("labels", [[0, 5, 1, 2], [0, -1, 1, 2]])
def test_kernels_leave_labels_out_of_range_to_the_general_path(labels):
    from thinc_losses_plus.categorical import LOG_PROB_ATOL
    from thinc_losses_plus.functional.checked_cross_entropy import checked_nll_with_integer_labels

    p = numpy.full((4, 5), 0.2)
    labels = numpy.asarray(labels)
    assert checked_cross_entropy_with_integer_labels(numpy, p, labels) is None
    assert checked_nll_with_integer_labels(numpy, numpy.log(p), labels, atol=LOG_PROB_ATOL) is None


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("divisor", [1, 256, 3])
@pytest.mark.parametrize("scale", [2.0, 300.0])  # a span under SAFE_RANGE (one shift), and over it (per row)
@pytest.mark.parametrize("want_grad", [True, False])
def test_logits_kernel_gives_the_general_functions_bits(shape, dtype, divisor, scale, want_grad):
    from thinc_losses_plus.functional.checked_cross_entropy import checked_softmax_cross_entropy_with_integer_labels
    from thinc_losses_plus.functional.softmax import softmax_cross_entropy_with_integer_labels

    n, c = shape
    rng = numpy.random.default_rng(5)
    z = (rng.normal(size=(n, c)) * scale).astype(dtype)
    y = rng.integers(0, c, size=n)
    before = z.copy()
    grad, log_gold = checked_softmax_cross_entropy_with_integer_labels(
        numpy, z, y.astype("int32"), divisor=divisor, want_grad=want_grad
    )
    span = float(z.max()) - float(z.min())
    ref_grad, ref_losses = softmax_cross_entropy_with_integer_labels(
        numpy, z.copy(), y, from_logits=True, span=span, divisor=divisor, want_grad=want_grad
    )
    assert (-log_gold).tobytes() == ref_losses.tobytes()
    if want_grad:
        assert grad.dtype == z.dtype and grad.flags.c_contiguous and grad.tobytes() == ref_grad.tobytes()
    else:
        assert grad is None and ref_grad is None
    assert z.tobytes() == before.tobytes(), "the logits are not written"


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf])
def test_logits_kernel_leaves_non_finite_logits_to_the_general_path(bad):
    from thinc_losses_plus.categorical import SparseCategoricalCrossentropy
    from thinc_losses_plus.functional.checked_cross_entropy import checked_softmax_cross_entropy_with_integer_labels

    z = numpy.zeros((4, 5), dtype="float32")
    z[2, 2] = bad
    labels = numpy.zeros(4, dtype="int64")
    assert checked_softmax_cross_entropy_with_integer_labels(numpy, z, labels) is None
    assert checked_softmax_cross_entropy_with_integer_labels(numpy, numpy.zeros((4, 5)), labels - 1) is None
    with pytest.raises(ValueError, match="SparseCategoricalCrossentropy.*guesses.*NaN or infinite"):
        SparseCategoricalCrossentropy(from_logits=True)(z, labels)


class _DeviceLike:
    """numpy under another name: the kernels take their device branches (``xp is not numpy``)."""

    def __getattr__(self, name):
        return getattr(numpy, name)

    @staticmethod
    def stack(arrays):  # a device array, whose one .tolist() is the transfer
        from test_device_transfers import Counting

        return numpy.stack(arrays).view(Counting)


@pytest.mark.parametrize("kernel", ["probabilities", "logits", "log_probs"])
def test_each_kernel_makes_one_transfer_on_a_device(kernel):
    from test_device_transfers import Counting

    from thinc_losses_plus.categorical import LOG_PROB_ATOL
    from thinc_losses_plus.functional import checked_cross_entropy as K

    p, y = _probabilities(64, 7, "float32")
    guesses = {"probabilities": p, "logits": numpy.log(p) * 3, "log_probs": numpy.log(p)}[kernel]
    call = {
        "probabilities": K.checked_cross_entropy_with_integer_labels,
        "logits": K.checked_softmax_cross_entropy_with_integer_labels,
        "log_probs": lambda xp, g, t, **kw: K.checked_nll_with_integer_labels(xp, g, t, atol=LOG_PROB_ATOL, **kw),
    }[kernel]
    expected = call(numpy, guesses, y, divisor=64)
    Counting.conversions = 0
    result = call(_DeviceLike(), guesses.view(Counting), y.view(Counting), divisor=64)
    assert Counting.conversions == 1, "the checks fold into one transfer"
    for a, b in zip(result, expected):
        assert numpy.asarray(a).tobytes() == b.tobytes()
