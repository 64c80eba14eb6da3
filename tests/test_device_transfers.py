"""One call, at most one device-to-host transfer for its checks (GPU readiness without a GPU).

On a GPU every ``bool()``, ``float()``, ``int()``, ``.item()``, ``.tolist()``
or index taken from a device array waits for the device and copies to the
host. The battery's inputs are given here as an ``ndarray`` subclass that
counts those conversions (numpy keeps the subclass through ufuncs and
reductions), and :class:`thinc_losses_plus._inputs.Checks` counts its
transfers. One ``__call__`` may make one transfer for all of its checks
and one for the returned float; a ``WeightedSum`` that much per sub-loss.
"""
import numpy
import pytest
from thinc.types import Ragged

from battery import inputs
from cases import all_cases
from thinc_losses_plus import _inputs

CASES = all_cases()
#: The checks' one transfer, and the returned float.
BUDGET = 2


class Counting(numpy.ndarray):
    """An ndarray that counts its conversions to Python values."""

    conversions = 0

    def _count(self):
        Counting.conversions += 1
        return self.view(numpy.ndarray)

    def __bool__(self):
        return bool(self._count())

    def __float__(self):
        return float(self._count())

    def __int__(self):
        return int(self._count())

    def __index__(self):
        return self._count().__index__()

    def item(self, *args):
        return self._count().item(*args)

    def tolist(self):
        return self._count().tolist()


def counting(obj):
    if isinstance(obj, Ragged):
        return Ragged(counting(obj.dataXd), obj.lengths)
    if isinstance(obj, tuple):
        return tuple(counting(o) for o in obj)
    if isinstance(obj, list):
        return [counting(o) for o in obj]
    if isinstance(obj, numpy.ndarray):
        return obj.view(Counting)
    return obj


@pytest.fixture
def transfers(monkeypatch):
    runs = []
    original = _inputs.Checks.run

    def counted_run(self):
        runs.append(1)
        return original(self)

    monkeypatch.setattr(_inputs.Checks, "run", counted_run)

    def total():
        return len(runs) + Counting.conversions

    def reset():
        runs.clear()
        Counting.conversions = 0

    return total, reset


def test_the_counter_counts(transfers):
    total, reset = transfers
    reset()
    x = numpy.ones((3,)).view(Counting)
    assert bool(x.sum() > 0) and float(x.min()) == 1.0
    assert total() == 2


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_one_call_makes_at_most_one_transfer_for_its_checks(case, transfers):
    total, reset = transfers
    loss_calc = case.build()
    guesses, truths = inputs(case, numpy, "float32")
    guesses, truths = counting(guesses), counting(truths)
    loss_calc(guesses, truths)  # warm-up: lazily built tables and the like
    reset()
    loss_calc(guesses, truths)
    budget = BUDGET * _leaves(loss_calc)
    assert total() <= budget, f"{case.key}: one call made {total()} device-to-host transfers (budget {budget})"


def _leaves(loss_calc) -> int:
    subs = getattr(loss_calc, "losses", None)
    if not isinstance(subs, dict):
        return 1
    return sum(_leaves(sub) for sub in subs.values())


def _one_pass(loss_calc) -> bool:
    """Its terms come from one evaluation (not from :func:`~thinc_losses_plus._core.probe_elements`)."""
    from thinc_losses_plus import LossCalculator

    return not loss_calc.elementwise or type(loss_calc).evaluate_per_element is not LossCalculator.evaluate_per_element


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_per_element_losses_make_at_most_one_transfer(case, transfers):
    """``get_loss_per_element`` returns an array: its checks' one transfer is all it may make.
    (An elementwise calculator left to ``probe_elements``, as KLDivergence, makes one per column.)"""
    loss_calc = case.build()
    if not _one_pass(loss_calc):
        pytest.skip(f"{type(loss_calc).__name__} gets its terms from probe_elements (one evaluation per column)")
    total, reset = transfers
    guesses, truths = inputs(case, numpy, "float32")
    guesses, truths = counting(guesses), counting(truths)
    loss_calc.get_loss_per_element(guesses, truths)  # warm-up
    reset()
    loss_calc.get_loss_per_element(guesses, truths)
    budget = _leaves(loss_calc)
    assert total() <= budget, f"{case.key}: get_loss_per_element made {total()} device-to-host transfers (budget {budget})"
