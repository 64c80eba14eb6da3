"""thinc_losses_plus.testing.check_loss: passes our calculators, names what fails in others."""
import numpy
import pytest

from battery import inputs
from cases import all_cases
from thinc_losses_plus import L2Distance, LossCalculator
from thinc_losses_plus.testing import check_loss

SIMPLE = [
    c for c in all_cases()
    if c.gradient != "none" and isinstance(inputs(c, numpy)[0], numpy.ndarray) and c.weightable and c.permutable
]


def test_simple_cases_exist():
    assert len(SIMPLE) >= 10


@pytest.mark.parametrize("case", SIMPLE, ids=[c.key for c in SIMPLE])
def test_our_calculators_pass(case):
    guesses, truths = inputs(case, numpy, "float64")
    check_loss(case.build(), guesses, truths, gradient=case.gradient, rtol=case.fd_rtol, atol=case.fd_atol)


class Broken(LossCalculator):
    """An L2 loss with one defect, chosen by ``defect``."""

    name = "Broken"

    def __init__(self, *, normalize: bool = True, defect: str = ""):
        super().__init__(normalize=normalize)
        self.defect = defect

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        diff = guesses - truths
        if self.defect == "mutation":
            guesses[...] = guesses
            truths += 0.0 * truths
            truths[0, 0] += 1e-3
        if self.defect == "random":
            diff = diff + numpy.random.default_rng().normal(scale=1e-9, size=diff.shape)
        per_example = 0.5 * (diff * diff).sum(axis=1)
        if sample_weight is not None and self.defect != "ignores-weights":
            per_example = per_example * sample_weight
        grad = diff / divisor
        if self.defect == "dtype":
            grad = grad.astype("float64")
        if self.defect == "gradient":
            grad = 2 * grad
        return grad, per_example


@pytest.mark.parametrize(
    "defect,property",
    [
        ("gradient", "finite-differences"),
        ("mutation", "no-mutation"),
        ("random", "determinism"),
        ("dtype", "dtypes"),
        ("ignores-weights", "sample-weight"),
    ],
)
def test_each_defect_is_named(defect, property):
    rng = numpy.random.default_rng(0)
    with pytest.raises(AssertionError, match=f"^{property}: "):
        check_loss(Broken(defect=defect), rng.normal(size=(4, 3)), rng.normal(size=(4, 3)))


def test_a_correct_custom_loss_passes():
    rng = numpy.random.default_rng(0)
    check_loss(Broken(), rng.normal(size=(4, 3)), rng.normal(size=(4, 3)))
    check_loss(L2Distance(), rng.normal(size=(4, 3)), rng.normal(size=(4, 3)))
