"""Every Thinc sequence container gives the same numbers to the sequence losses."""
import numpy
import pytest
from thinc.api import NumpyOps
from thinc.types import Padded, Ragged

from thinc_losses_plus import SequenceCategoricalCrossentropy

ops = NumpyOps()
rng = numpy.random.default_rng(0)
LENGTHS = [3, 5, 1, 4]


def probs(n, c=4):
    e = numpy.exp(rng.normal(size=(n, c)))
    return (e / e.sum(axis=1, keepdims=True)).astype("f")


SEQS = [probs(n) for n in LENGTHS]
TRUTHS = [rng.integers(0, 4, size=n) for n in LENGTHS]


def padded_array(seqs):
    out = numpy.zeros((len(seqs), max(LENGTHS), 4), dtype="f")
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def containers():
    return {
        "list": SEQS,
        "ragged": Ragged(numpy.concatenate(SEQS), numpy.asarray(LENGTHS, dtype="int32")),
        "padded": ops.list2padded(SEQS),
        "array-lengths": (padded_array(SEQS), numpy.asarray(LENGTHS)),
    }


def as_list(grad):
    if isinstance(grad, Ragged):
        return ops.unflatten(grad.dataXd, grad.lengths)
    if isinstance(grad, Padded):
        return ops.padded2list(grad)
    if isinstance(grad, numpy.ndarray) and grad.ndim == 3:
        return [grad[i, :n] for i, n in enumerate(LENGTHS)]
    return grad


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("kind", ["ragged", "padded", "array-lengths"])
def test_same_numbers_in_every_container(kind, normalize):
    loss_calc = SequenceCategoricalCrossentropy(normalize=normalize, label_smoothing=0.1)
    grads, loss = loss_calc(SEQS, TRUTHS)
    guesses = containers()[kind]
    got_grad, got_loss = loss_calc(guesses, TRUTHS)
    assert got_loss == loss
    reference = {"ragged": Ragged, "padded": Padded, "array-lengths": numpy.ndarray}[kind]
    assert isinstance(got_grad, reference)
    for a, b in zip(as_list(got_grad), grads, strict=True):
        assert a.tobytes() == numpy.ascontiguousarray(b).tobytes()
    assert [p.tolist() for p in loss_calc.get_loss_per_example(guesses, TRUTHS)] == [
        p.tolist() for p in loss_calc.get_loss_per_example(SEQS, TRUTHS)
    ]


def test_padding_gets_zero_gradient():
    loss_calc = SequenceCategoricalCrossentropy()
    grad_padded, _ = loss_calc(containers()["padded"], TRUTHS)
    for column, length in enumerate(grad_padded.lengths):
        assert (grad_padded.data[length:, column] == 0).all()
    grad_array, _ = loss_calc(containers()["array-lengths"], TRUTHS)
    for i, length in enumerate(LENGTHS):
        assert (grad_array[i, length:] == 0).all()


@pytest.mark.parametrize(
    "guesses,match",
    [
        (Ragged(numpy.concatenate(SEQS), numpy.asarray([3, 5, 1, 9], dtype="int32")), "lengths add up to 18"),
        ((padded_array(SEQS), numpy.asarray([3, 5, 1, 9])), "lengths \\[3, 5, 1, 9\\] do not fit"),
        ((padded_array(SEQS), numpy.asarray([3.0, 5.0, 1.0, 4.0])), "int lengths"),
    ],
)
def test_malformed_containers_name_the_calculator(guesses, match):
    with pytest.raises((ValueError, TypeError), match=f"^Cannot calculate SequenceCategoricalCrossentropy: 'guesses' .*{match}"):
        SequenceCategoricalCrossentropy()(guesses, TRUTHS)
