"""Combination of losses: a weighted sum of any Thinc ``Loss`` calculators.

Theanets lets a network train on several losses at once, each with a
weight; ``WeightedSum`` does the same for Thinc: ``losses`` are calculators
(resolved ``@losses`` blocks in a config, Thinc's built-ins as well as this
package's), and the loss and the gradient are the weighted sums of theirs.
"""
import inspect
import math
from typing import Any, Dict, List, Optional, Tuple

from thinc.loss import Loss
from thinc.types import Ragged

from ._checks import call_error, check_float, setting_error
from ._core import Evaluation, LossCalculator, scale_tree


def add_into(total: Any, tree: Any, what: str, *, name: str = "WeightedSum") -> Any:
    """``total += tree`` for two gradient structures of the same shape; ``total`` is ours to overwrite.

    ``name`` is the calculator the error names; ``what`` the loss giving ``tree``.
    """
    if isinstance(total, Ragged) and isinstance(tree, Ragged):
        return Ragged(add_into(total.dataXd, tree.dataXd, what, name=name), total.lengths)
    if isinstance(total, (tuple, list)) and type(tree) is type(total) and len(tree) == len(total):
        return type(total)(add_into(a, b, what, name=name) for a, b in zip(total, tree))
    if isinstance(total, dict) and isinstance(tree, dict) and total.keys() == tree.keys():
        return {k: add_into(total[k], tree[k], what, name=name) for k in total}
    if hasattr(total, "shape") and getattr(tree, "shape", None) == total.shape:
        total += tree
        return total
    problem = f"are shared, but {what} gives a gradient of another structure"
    raise call_error(name, "guesses", problem, TypeError)


def count_examples(guesses: Any) -> int:
    """Rows of an array (of the first array of a tuple), sequences of a Ragged or list."""
    if isinstance(guesses, Ragged):
        return len(guesses.lengths)
    if isinstance(guesses, tuple) and guesses:
        return count_examples(guesses[0])
    return int(guesses.shape[0]) if hasattr(guesses, "shape") else len(guesses)


class WeightedSum(LossCalculator):
    """Weighted sum of losses: ``loss = sum_k weights[k] * losses[k](guesses_k, truths_k)``.

    The gradient is ``sum_k weights[k] * grad_k``, taken with respect to the
    guesses as each sub-loss takes its own (e.g. w.r.t. the logits for the
    softmax family). Each sub-loss normalises itself as it is configured;
    ``WeightedSum`` adds nothing unless ``normalize=True``, which divides the
    sum (loss and gradient) by the number of examples N once more (useful with
    sub-losses set to ``normalize = false``; dict guesses must then all have N).

    Shapes: guesses and truths are each a dict keyed like ``losses`` (one
    entry per loss, in the shapes that loss takes, e.g. the heads of a
    multi-task model) or one value shared by every loss. With dict guesses
    the gradient is a dict ``{k: weights[k] * grad_k}``; with shared guesses
    it is the sum of the sub-gradients (which must then have one structure).
    ``sample_weight`` likewise is a dict or shared, and is passed to each
    sub-loss (a sub-loss that takes no ``sample_weight``, such as Thinc's
    built-ins, refuses it).

    ``weights`` may leave out a loss: its weight is 1.0. A weight for a name
    that is not in ``losses`` is an error (a typo would otherwise be ignored).
    ``get_loss_per_example`` and ``evaluate`` (sub-losses derived from this
    package's ``LossCalculator``, which evaluate through their public
    ``evaluate``) return ``sum_k weights[k] * per_example_k / divisor_k``:
    each example's share of the sub-losses as they are normalised (each by
    its own divisor, one per example for CTC), so that it sums to the loss
    (``normalize=False``); the sub-losses must have the same examples.
    ``__call__``, ``get_grad`` and ``get_loss`` take any Thinc ``Loss``.

    Args:
        losses: name -> calculator (any Thinc ``Loss``); not empty.
        weights: name -> weight, finite and >= 0; missing names weigh 1.0.
        normalize: divide the weighted sum by N (default False: the sub-losses normalise).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import CosineDistance, WeightedSum
        >>> from thinc.api import L2Distance
        >>> loss_calc = WeightedSum(
        ...     losses={"l2": L2Distance(), "cos": CosineDistance()}, weights={"l2": 0.5}
        ... )
        >>> guesses = {"l2": numpy.asarray([[1.0, 1.0]]), "cos": numpy.asarray([[0.0, 1.0]])}
        >>> truths = {"l2": numpy.asarray([[0.0, 1.0]]), "cos": numpy.asarray([[1.0, 0.0]])}
        >>> grad, loss = loss_calc(guesses, truths)
        >>> loss  # 0.5 * 1.0 (Thinc's L2Distance.v1 reports sum(d^2)) + 1.0 * (1 - 0)
        1.5
        >>> grad["l2"].tolist(), grad["cos"].tolist()
        ([[0.5, 0.0]], [[-1.0, 0.0]])

    Config::

        [loss]
        @losses = "WeightedSum.v1"

        [loss.losses]

        [loss.losses.tags]
        @losses = "SparseCategoricalCrossentropy.v4"

        [loss.losses.vectors]
        @losses = "CosineDistance.v2"

        [loss.weights]
        tags = 1.0
        vectors = 0.2

    References:
        theanets (multiple weighted losses per network):
        https://theanets.readthedocs.io/en/stable/guide.html
    """

    reductions = ("examples",)  # each part reduces itself

    name = "WeightedSum"

    def __init__(
        self,
        *,
        losses: Dict[str, Loss],
        weights: Optional[Dict[str, float]] = None,
        normalize: bool = False,
        weight: float = 1.0,
        reduction: str = "examples",
    ):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        if not isinstance(losses, dict) or not losses:
            problem = f"must be a non-empty dict of loss calculators, got {losses!r}"
            raise setting_error(self.name, "losses", problem, TypeError)
        for key, calc in losses.items():
            if not isinstance(key, str):
                raise setting_error(self.name, "losses", f"must have str names, got {key!r}", TypeError)
            if not (callable(calc) and hasattr(calc, "get_grad") and hasattr(calc, "get_loss")):
                problem = f"entry {key!r} must be a loss calculator (a thinc Loss), got {calc!r}"
                raise setting_error(self.name, "losses", problem, TypeError)
        weights = {} if weights is None else weights
        if not isinstance(weights, dict):
            raise setting_error(self.name, "weights", f"must be a dict of name -> weight, got {weights!r}", TypeError)
        unknown = sorted(set(weights) - set(losses), key=str)
        if unknown:
            problem = f"names losses that do not exist: {unknown} (losses: {list(losses)})"
            raise setting_error(self.name, "weights", problem)
        self.losses = dict(losses)
        self.weights = {
            key: check_float(self.name, f"weights.{key}", weights.get(key, 1.0), low=0.0, high=math.inf, high_open=True)
            for key in losses
        }

    # The Loss API ------------------------------------------------------

    def __call__(self, guesses, truths, *, sample_weight=None) -> Tuple[Any, float]:
        """Return ``(gradient, loss)``: each sub-loss is called once."""
        results = [(k, g, calc(g, t, **sw)) for k, calc, g, t, sw in self._parts(guesses, truths, sample_weight)]
        grads = [(k, g, grad) for k, g, (grad, _) in results]
        loss = math.fsum(self.weights[k] * float(value) for k, _, (_, value) in results)
        return self._weighted(self._combine(guesses, grads)), self.weight * loss / self._divisor(guesses)

    def get_grad(self, guesses, truths, *, sample_weight=None):
        """Return the weighted sum of the sub-gradients (a dict for dict guesses)."""
        grads = [(k, g, calc.get_grad(g, t, **sw)) for k, calc, g, t, sw in self._parts(guesses, truths, sample_weight)]
        return self._weighted(self._combine(guesses, grads))

    def get_loss(self, guesses, truths, *, sample_weight=None) -> float:
        """Return the weighted sum of the sub-losses as a Python float."""
        parts = self._parts(guesses, truths, sample_weight)
        loss = math.fsum(self.weights[k] * float(calc.get_loss(g, t, **sw)) for k, calc, g, t, sw in parts)
        return self.weight * loss / self._divisor(guesses)

    def _weighted(self, grad):
        return grad if self.weight == 1.0 else scale_tree(grad, self.weight)

    def evaluate(self, guesses, truths, *, sample_weight=None, want_grad: bool = True) -> Evaluation:
        """Weighted gradients and per-example shares, through each sub-loss's :meth:`evaluate`.

        Needs sub-losses of this package (a nested ``WeightedSum`` included):
        a Thinc built-in has no per-example losses. Each example's share is
        ``sum_k weights[k] * per_example_k / divisor_k``; the divisor of the
        result is N when ``normalize``, else 1.
        """
        total, grads = None, []
        for key, calc, g, t, sw in self._parts(guesses, truths, sample_weight):
            if not isinstance(calc, LossCalculator):
                raise call_error(
                    self.name, "losses", f"entry {key!r} ({type(calc).__name__}) has no per-example losses", TypeError
                )
            result = calc.weighted_evaluation(g, t, sample_weight=sw.get("sample_weight"), want_grad=want_grad)
            share = per_example_share(result.per_example, self.weights[key], result.divisor)
            total = share if total is None else add_shares(self.name, total, share, key)
            grads.append((key, g, result.grad))
        grad = self._combine(guesses, grads) if want_grad else None
        return Evaluation(grad, total, self._divisor(guesses))

    # Plumbing ------------------------------------------------------------

    def _parts(self, guesses, truths, sample_weight) -> List[Tuple[str, Any, Any, Any, Dict[str, Any]]]:
        """``(name, calculator, guesses, truths, {"sample_weight": ...} or {})`` per loss."""
        g = self._split("guesses", guesses)
        t = self._split("truths", truths)
        w = self._split("sample_weight", sample_weight)
        parts = []
        for key, calc in self.losses.items():
            sw = {}
            if w[key] is not None:
                if not takes_sample_weight(calc):
                    raise call_error(
                        self.name, "sample_weight",
                        f"cannot be given: loss {key!r} ({type(calc).__name__}) takes no sample_weight", TypeError,
                    )
                sw = {"sample_weight": w[key]}
            parts.append((key, calc, g[key], t[key], sw))
        return parts

    def _split(self, arg: str, value: Any) -> Dict[str, Any]:
        if not isinstance(value, dict):
            return {key: value for key in self.losses}
        missing = [key for key in self.losses if key not in value]
        if missing:
            raise call_error(self.name, arg, f"is a dict without entries for the losses {missing}")
        extra = sorted((key for key in value if key not in self.losses), key=str)
        if extra:
            problem = f"is a dict with entries for unknown losses {extra} (losses: {list(self.losses)})"
            raise call_error(self.name, arg, problem)
        return value

    def _divisor(self, guesses) -> float:
        if not self.normalize:
            return 1
        if not isinstance(guesses, dict):
            return count_examples(guesses) or 1
        counts = {key: count_examples(guesses[key]) for key in self.losses}
        if len(set(counts.values())) > 1:
            raise call_error(
                self.name, "guesses", f"must have one number of examples per loss when normalize is true, got {counts}"
            )
        return next(iter(counts.values())) or 1

    def _combine(self, guesses, grads: List[Tuple[str, Any, Any]]) -> Any:
        divisor = self._divisor(guesses)
        if isinstance(guesses, dict):
            return {k: scale_tree(grad, self.weights[k] / divisor) for k, _, grad in grads}
        total = None
        for key, _, grad in grads:
            part = scale_tree(grad, self.weights[key] / divisor)
            total = part if total is None else add_into(total, part, f"loss {key!r}", name=self.name)
        return total


def takes_sample_weight(calc: Any) -> bool:
    try:
        return "sample_weight" in inspect.signature(calc).parameters
    except (TypeError, ValueError):
        return False


def per_example_share(per_example: Any, weight: float, divisor: Any) -> Any:
    """``weight * per_example / divisor``; ``divisor``: a number, a 0-d or an (N,) array.

    Sequence losses give a list of per-sequence arrays: sequence ``i`` is
    divided by ``divisor[i]``.
    """
    if isinstance(per_example, list):
        if getattr(divisor, "ndim", 0) == 1:
            return [p * (weight / divisor[i]) for i, p in enumerate(per_example)]
        return [p * (weight / divisor) for p in per_example]
    return per_example * (weight / divisor)


def add_shares(name: str, total: Any, share: Any, key: str) -> Any:
    if isinstance(total, list) and isinstance(share, list) and len(total) == len(share):
        return [a + b for a, b in zip(total, share)]
    if hasattr(total, "shape") and getattr(share, "shape", None) == total.shape:
        return total + share
    size = len(share) if isinstance(share, list) else tuple(share.shape)
    raise call_error(name, "guesses", f"give loss {key!r} other examples ({size}) than the losses before it")
