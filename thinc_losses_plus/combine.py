"""Combination of losses: a weighted sum of any Thinc ``Loss`` calculators.

Theanets lets a network train on several losses at once, each with a
weight; ``WeightedSum`` does the same for Thinc: ``losses`` are calculators
(resolved ``@losses`` blocks in a config, Thinc's built-ins as well as this
package's), and the loss and the gradient are the weighted sums of theirs.
"""
import inspect
import math
from typing import Any, Dict, List, Optional, Tuple

from thinc.backends import get_array_ops
from thinc.loss import Loss
from thinc.types import Ragged
from thinc.util import is_cupy_array, is_numpy_array

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

    Memory: with shared guesses the parts' gradients are added into one array
    as each arrives, scaled in place where they share no memory with the
    inputs (this package's calculators' gradients: :class:`GradientFold`), so
    a call holds the total and the part being evaluated: two parts that each
    return a gradient of their own peak at about 2x one gradient (4.0x when
    every part's gradient and a scaled copy of it were held).

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
        fold = GradientFold(self, guesses, (guesses, truths, sample_weight))
        values = []
        for key, calc, g, t, sw in self._parts(guesses, truths, sample_weight):
            grad, value = calc(g, t, **sw)
            fold.add(key, grad, calc)
            del grad  # (the fold holds what it needs)
            values.append((key, value))
        loss = math.fsum(self.weights[k] * float(value) for k, value in values)
        return fold.result(), self.weight * loss / self._divisor(guesses)

    def get_grad(self, guesses, truths, *, sample_weight=None):
        """Return the weighted sum of the sub-gradients (a dict for dict guesses)."""
        fold = GradientFold(self, guesses, (guesses, truths, sample_weight))
        for key, calc, g, t, sw in self._parts(guesses, truths, sample_weight):
            fold.add(key, calc.get_grad(g, t, **sw), calc)
        return fold.result()

    def get_loss(self, guesses, truths, *, sample_weight=None) -> float:
        """Return the weighted sum of the sub-losses as a Python float."""
        parts = self._parts(guesses, truths, sample_weight)
        loss = math.fsum(self.weights[k] * float(calc.get_loss(g, t, **sw)) for k, calc, g, t, sw in parts)
        return self.weight * loss / self._divisor(guesses)

    def evaluate(self, guesses, truths, *, sample_weight=None, want_grad: bool = True) -> Evaluation:
        """Weighted gradients and per-example shares, through each sub-loss's :meth:`evaluate`.

        Needs sub-losses of this package (a nested ``WeightedSum`` included):
        a Thinc built-in has no per-example losses. Each example's share is
        ``sum_k weights[k] * per_example_k / divisor_k``; the divisor of the
        result is N when ``normalize``, else 1.
        """
        total = None
        fold = GradientFold(self, guesses, (guesses, truths, sample_weight)) if want_grad else None
        for key, calc, g, t, sw in self._parts(guesses, truths, sample_weight):
            if not isinstance(calc, LossCalculator):
                raise call_error(
                    self.name, "losses", f"entry {key!r} ({type(calc).__name__}) has no per-example losses", TypeError
                )
            result = calc.weighted_evaluation(g, t, sample_weight=sw.get("sample_weight"), want_grad=want_grad)
            share = per_example_share(result.per_example, self.weights[key], result.divisor)
            total = share if total is None else add_shares(self.name, total, share, key)
            if want_grad:
                fold.add(key, result.grad, calc)
            del result
        return Evaluation(fold.result(scalar=False) if want_grad else None, total, self._divisor(guesses))

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
        """The weighted sum (a dict for dict guesses) of ``(name, guesses, gradient)`` triples."""
        fold = GradientFold(self, guesses, (guesses,))
        for key, _, grad in grads:
            fold.add(key, grad)
        return fold.result(scalar=False)


class GradientFold:
    """The gradient of a :class:`WeightedSum` call, folded in as each part's arrives.

    ``add(name, grad)`` scales the part's gradient by ``weights[name] / divisor``
    and, for shared guesses, adds it into the total: the same operations, in
    the same order, as ``total + grad * factor`` (the same bits), but in place
    where the arrays are ours to overwrite, so that the call holds one
    gradient beside the part being evaluated (not every part's, plus a scaled
    copy of each). A part's gradient is written in place only when it comes
    from a calculator of this package (a :class:`LossCalculator`: a new array
    each call) and is an array (or a tuple or list of arrays) that shares no
    memory with the call's inputs nor with the total; any other is copied, as
    before (another ``Loss`` may return an array it keeps).
    """

    def __init__(self, owner: WeightedSum, guesses, inputs):
        self.owner = owner
        self.divisor = owner._divisor(guesses)
        self.shared = not isinstance(guesses, dict)
        self.inputs = [leaf for value in inputs for leaf in array_leaves(value)]
        self.total = None
        self.parts: Dict[str, Any] = {}

    def factor(self, key: str) -> float:
        return self.owner.weights[key] / self.divisor

    def add(self, key: str, grad, calc=None) -> None:
        """Fold in part ``key``'s gradient, from ``calc`` (None: a gradient of unknown origin)."""
        factor = self.factor(key)
        mine = isinstance(calc, LossCalculator)
        if not self.shared:
            self.parts[key] = self.scaled(grad, factor, mine)
        elif self.total is None:
            self.total = self.scaled(grad, factor, mine)
        elif factor == 1.0:
            self.total = add_into(self.total, grad, f"loss {key!r}", name=self.owner.name)
        else:
            self.total = add_into(self.total, self.scaled(grad, factor, mine), f"loss {key!r}", name=self.owner.name)

    def scaled(self, grad, factor: float, mine: bool):
        """``grad * factor``: in place when ``grad`` is ours to overwrite (``mine``: it comes from
        a calculator of this package, whose gradients are new arrays, and :meth:`owned`),
        else a new array (tree): another ``Loss`` may hand out an array it keeps."""
        if not mine:
            return scale_tree(grad, factor)
        if factor == 1.0 and self.total is None and self.owned(grad):
            return grad
        if factor != 1.0 and self.owned(grad):
            for leaf in array_leaves(grad):
                leaf *= factor
            return grad
        return scale_tree(grad, factor)

    def owned(self, grad) -> bool:
        """Whether ``grad`` is an array, or a tuple or list of arrays, that shares no memory with
        the inputs nor with the total (a sub-loss's fresh gradient): ours to overwrite."""
        if isinstance(grad, (tuple, list)):
            leaves = list(grad)
            if not all(is_plain_array(g) for g in leaves):
                return False
        elif is_plain_array(grad):
            leaves = [grad]
        else:
            return False
        others = self.inputs + array_leaves(self.total)
        for i, leaf in enumerate(leaves):
            overlap = getattr(get_array_ops(leaf).xp, "may_share_memory", None)
            if overlap is None or not getattr(leaf.flags, "writeable", True):
                return False
            try:
                if any(type(other) is type(leaf) and overlap(leaf, other) for other in others + leaves[:i]):
                    return False
            except (TypeError, ValueError):  # arrays it cannot compare: leave them alone
                return False
        return True

    def result(self, *, scalar: bool = True):
        """The combined gradient, times the sum's ``weight`` (unless ``scalar`` is false: evaluate scales later)."""
        grad = self.parts if not self.shared else self.total
        if not self.shared:
            grad = {key: self.parts[key] for key in self.owner.losses if key in self.parts}
        weight = self.owner.weight
        if not scalar or weight == 1.0:
            return grad
        if self.shared and self.owned_total():
            for leaf in array_leaves(grad):
                leaf *= weight
            return grad
        return scale_tree(grad, weight)

    def owned_total(self) -> bool:
        saved, self.total = self.total, None
        try:
            return self.owned(saved)
        finally:
            self.total = saved


def is_plain_array(x) -> bool:
    """A numpy or cupy array (not a numpy scalar, which has no memory to write in place)."""
    return is_numpy_array(x) or is_cupy_array(x)


def array_leaves(tree) -> list:
    """The arrays in ``tree`` (an array, Ragged, tuple, list or dict of them; anything else: none)."""
    if tree is None:
        return []
    if isinstance(tree, Ragged):
        return array_leaves(tree.dataXd) + array_leaves(tree.lengths)
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in array_leaves(item)]
    if isinstance(tree, dict):
        return [leaf for item in tree.values() for leaf in array_leaves(item)]
    return [tree] if is_plain_array(tree) else []


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
