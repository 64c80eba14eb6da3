"""CTC.v1 takes every Thinc sequence container and Gluon's -1-padded labels."""
import numpy
import pytest
from thinc.api import NumpyOps
from thinc.types import Padded, Ragged

from thinc_losses_plus import CTC

ops = NumpyOps()
rng = numpy.random.default_rng(0)
STEPS = [6, 9, 4]
C = 5


def probs(n):
    e = numpy.exp(rng.normal(size=(n, C)))
    return (e / e.sum(axis=1, keepdims=True)).astype("f")


SEQS = [probs(n) for n in STEPS]
LABELS = [[1, 2], [3, 3, 4], [2]]


def as_list(grad):
    if isinstance(grad, Ragged):
        return ops.unflatten(grad.dataXd, grad.lengths)
    if isinstance(grad, Padded):
        return ops.padded2list(grad)
    if isinstance(grad, numpy.ndarray):
        return [grad[i, :n] for i, n in enumerate(STEPS)]
    return grad


def padded_array():
    out = numpy.zeros((3, max(STEPS), C), dtype="f")
    for i, s in enumerate(SEQS):
        out[i, : len(s)] = s
    return out


CONTAINERS = {
    "ragged": lambda: Ragged(numpy.concatenate(SEQS), numpy.asarray(STEPS, dtype="int32")),
    "padded": lambda: ops.list2padded(SEQS),
    "array-lengths": lambda: (padded_array(), numpy.asarray(STEPS)),
}


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
@pytest.mark.parametrize("normalize", [True, False])
def test_same_numbers_in_every_container(kind, normalize):
    loss_calc = CTC(normalize=normalize)
    grads, loss = loss_calc(SEQS, LABELS)
    got, got_loss = loss_calc(CONTAINERS[kind](), LABELS)
    assert got_loss == loss
    assert isinstance(got, {"ragged": Ragged, "padded": Padded, "array-lengths": numpy.ndarray}[kind])
    for a, b in zip(as_list(got), grads, strict=True):
        assert numpy.ascontiguousarray(a).tobytes() == b.tobytes()


def test_labels_padded_with_minus_one():
    loss_calc = CTC()
    expected = loss_calc(SEQS, LABELS)
    padded_lists = [[1, 2, -1, -1], [3, 3, 4, -1], [2, -1, -1, -1]]
    as_array = numpy.asarray(padded_lists)
    for truths in (padded_lists, as_array, [numpy.asarray(x) for x in padded_lists]):
        got = loss_calc(SEQS, truths)
        assert got[1] == expected[1]
        assert all(a.tobytes() == b.tobytes() for a, b in zip(got[0], expected[0]))


def test_minus_one_inside_a_sequence_is_refused():
    with pytest.raises(ValueError, match="^Cannot calculate CTC: 'truths' sequence 0 has -1 \\(padding\\) before a label"):
        CTC()(SEQS, [[1, -1, 2], [3], [2]])


def test_other_negative_labels_are_still_refused():
    with pytest.raises(ValueError, match="^Cannot calculate CTC: 'truths' sequence 1 contains label -2"):
        CTC()(SEQS, [[1], [-2], [2]])
