"""Partial-label cross-entropy: several classes of a row may be correct (spaCy's transition loss).

The maths is in :mod:`thinc_losses_plus.functional.transition`; spaCy's
``ner_with_loss`` and ``parser_with_loss`` (:mod:`thinc_losses_plus.spacy_transition`)
use this calculator as their default loss.
"""
import copy
from typing import Dict, List, Optional, Sequence

import numpy

from ._checks import call_error, check_float, setting_error
from ._core import ELEMENTS, EXAMPLES, WEIGHTS, LossCalculator
from ._inputs import Checks, array_module, float_array, is_array, prepare_sample_weight, restore_dtype
from .functional.transition import partial_label_cross_entropy, row_weights_from_columns
from .labels import BALANCED, ClassWeights, check_class_weights, check_names


class PartialLabelCrossentropy(LossCalculator):
    """Cross-entropy over a set of acceptable classes, with a validity mask.

    Every acceptable class of a row is a correct answer (partial-label
    learning; spaCy's transition-based loss ``cpu_log_loss``, where every
    zero-cost valid action is correct). With ``p`` the softmax of the logits
    over the valid columns, ``q`` the softmax over the acceptable ones and
    ``P_A = sum_{a in A} p_a``::

        loss = -sum_i w_i * (1 - P_A,i)^gamma * log P_A,i / n
        grad =  w_i * f_i * (p_i - q_i) / n
        f_i  =  (1 - P)^gamma + gamma * (1 - P)^(gamma - 1) * P * (-log P)

    The gradient is the exact derivative of the loss with respect to the
    **logits** (the guesses are scores, as spaCy's parser model outputs them).
    ``gamma = 0`` gives the cross-entropy ``-log P_A`` with gradient
    ``p - q``, computed in float64 exactly as spaCy computes it (the same
    bits). Invalid columns take no part in the softmax (gradient 0); a row
    without an acceptable column adds 0 (spaCy skips it too).

    Truths: an ``(N, C)`` int or bool array, ``1`` (``True``) for an
    acceptable class, ``0`` for a wrong one, ``-1`` for an invalid one (left
    out of the softmax). spaCy's own loss keeps invalid actions in the
    softmax as wrong answers: its components pass ``0`` for them.

    Class weights weigh rows: a row whose acceptable classes all belong to
    one label weighs that label's weight; a row whose acceptable classes
    span several labels (an unannotated token, where every action is
    correct) weighs the weight of ``missing_label``. ``column_labels`` gives
    the label of each column (spaCy: the entity or dependency label of each
    action, ``O`` for NER's outside actions, ``S`` and ``D`` for the
    parser's shift and reduce); without it each column is its own label,
    named by ``names``. ``class_weights`` is a dict label -> weight (absent
    labels weigh 1.0), a list with one weight per column, or ``"balanced"``
    (counted from the training corpus: a spaCy component does it in
    ``initialize``).

    Shapes: guesses ``(N, C)`` logits (scores); truths ``(N, C)`` codes
    (int: 1, 0, -1; or bool: acceptable).

    ``n`` is the number of rows when ``normalize``, else 1; with
    ``reduction = "weights"`` it is the sum of the rows' weights (class times
    sample weights; rows without an acceptable class excluded).

    Args:
        normalize: divide the loss and the gradient by N.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        names: column names (spaCy: the action names).
        column_labels: the label of each column, for dict ``class_weights``.
        class_weights: dict label -> weight, list per column, or "balanced".
        missing_label: the label whose weight rows with several labels take.
        gamma: focal exponent (Lin et al., 2017); 0 is the cross-entropy.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import PartialLabelCrossentropy
        >>> loss_calc = PartialLabelCrossentropy()
        >>> logits = numpy.asarray([[0.0, 0.0, 0.0, 0.0]], dtype="f")
        >>> truths = numpy.asarray([[1, 1, 0, -1]])
        >>> grad, loss = loss_calc(logits, truths)
        >>> round(loss, 4)  # -log(2/3): two of the three valid classes are correct
        0.4055
        >>> grad.astype("float64").round(4).tolist()  # p - q = 1/3 - 1/2 on the acceptable columns
        [[-0.1667, -0.1667, 0.3333, 0.0]]

    References:
        Jin, Ghahramani. Learning with Multiple Labels. NIPS 2002.
        Goldberg, Nivre. A Dynamic Oracle for Arc-Eager Dependency Parsing. COLING 2012.

    Config::

        [loss]
        @losses = "PartialLabelCrossentropy.v1"
        gamma = 2.0

        [loss.class_weights]
        O = 0.5
        PERSON = 2.0
    """

    name = "PartialLabelCrossentropy"
    reductions = (EXAMPLES, ELEMENTS, WEIGHTS)

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        names: Optional[Sequence[str]] = None,
        column_labels: Optional[Sequence[str]] = None,
        class_weights: ClassWeights = None,
        missing_label: str = "-",
        gamma: float = 0.0,
    ):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        if not isinstance(missing_label, str):
            raise setting_error(self.name, "missing_label", f"must be a str, got {missing_label!r}", TypeError)
        self.missing_label = str(missing_label)
        self.gamma = check_float(self.name, "gamma", gamma, low=0.0)
        self.names = check_names(self.name, names)
        self.column_labels = self._check_column_labels(column_labels, self.names)
        self.class_weights = check_class_weights(self.name, class_weights)
        self._check_weight_keys()

    # Settings -------------------------------------------------------------------

    def _check_column_labels(self, column_labels, names) -> Optional[List[str]]:
        if column_labels is None:
            return None
        if isinstance(column_labels, str) or not isinstance(column_labels, Sequence):
            raise setting_error(self.name, "column_labels", f"must be a list of strings, got {column_labels!r}", TypeError)
        labels = list(column_labels)
        if not all(isinstance(label, str) for label in labels):
            raise setting_error(self.name, "column_labels", "must contain only strings", TypeError)
        if names is not None and len(labels) != len(names):
            raise setting_error(
                self.name, "column_labels", f"has {len(labels)} entries but there are {len(names)} names"
            )
        return [str(label) for label in labels]

    def labels(self) -> Optional[List[str]]:
        """The labels class weights are keyed by, in column order, each once (None if unknown)."""
        keys = self.column_labels if self.column_labels is not None else self.names
        return None if keys is None else list(dict.fromkeys(keys))

    def _check_weight_keys(self) -> None:
        if not isinstance(self.class_weights, dict):
            return
        known = self.labels()
        if known is None:
            return
        unknown = sorted(set(self.class_weights) - set(known) - {self.missing_label})
        if unknown:
            raise setting_error(self.name, "class_weights", f"names unknown labels: {unknown}")

    def with_names(self, names: Sequence[str]) -> "PartialLabelCrossentropy":
        """A copy with the column names set (each column its own label)."""
        return self.with_columns(names, None)

    def with_columns(self, names: Sequence[str], column_labels: Optional[Sequence[str]]) -> "PartialLabelCrossentropy":
        """A copy with the column names and their labels set (for spaCy components).

        Raises ValueError if a dict of ``class_weights`` names a label that is
        not among them.
        """
        clone = copy.copy(self)
        clone.names = check_names(self.name, names)
        clone.column_labels = self._check_column_labels(column_labels, clone.names)
        clone._check_weight_keys()
        return clone

    def with_class_weights(self, class_weights: ClassWeights) -> "PartialLabelCrossentropy":
        """A copy with ``class_weights`` set, e.g. the counted weights that replace ``"balanced"``."""
        clone = copy.copy(self)
        clone.class_weights = check_class_weights(self.name, class_weights)
        clone._check_weight_keys()
        return clone

    # Weights ------------------------------------------------------------------------

    def _column_weights(self, n_classes: int, xp):
        """``(per-column weights, per-column label ids, missing weight)``, or None without class weights."""
        weights = self.class_weights
        if weights is None:
            return None
        if weights == BALANCED:
            raise call_error(
                self.name, "class_weights",
                "is 'balanced', which must be counted from the training corpus before the first call: a spaCy "
                "component does it in initialize; in Thinc, count them with "
                "thinc_losses_plus.class_weights.balanced_class_weights and pass them to with_class_weights",
            )
        keys = self.column_labels if self.column_labels is not None else self.names
        if keys is not None and len(keys) != n_classes:
            arg = "column_labels" if self.column_labels is not None else "names"
            raise call_error(self.name, arg, f"has {len(keys)} entries but the guesses have {n_classes} columns")
        if isinstance(weights, dict):
            if keys is None:
                raise call_error(
                    self.name, "class_weights",
                    "is a dict, which needs 'names' or 'column_labels' to map it to columns (or a spaCy component)",
                )
            per_column = [weights.get(key, 1.0) for key in keys]
            missing = weights.get(self.missing_label, 1.0)
        else:
            if len(weights) != n_classes:
                raise call_error(self.name, "class_weights", f"has {len(weights)} entries but the guesses have {n_classes} columns")
            per_column = list(weights)
            missing = 1.0
        if keys is None:
            key_ids = list(range(n_classes))
        else:
            index: Dict[str, int] = {}
            key_ids = [index.setdefault(key, len(index)) for key in keys]
        return xp.asarray(per_column, dtype="float64"), xp.asarray(key_ids, dtype="int64"), float(missing)

    # The computation --------------------------------------------------------------

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        float_array(self.name, "guesses", guesses, ndim=2)
        xp = array_module(guesses)
        n, c = guesses.shape
        if self.names is not None and len(self.names) != c:
            raise call_error(self.name, "names", f"has {len(self.names)} entries but the guesses have {c} columns")
        codes = self._truth_codes(truths, guesses.shape, xp)
        checks = Checks(self.name, xp)
        checks.finite("guesses", guesses)
        if codes.size and codes.dtype.kind != "b":
            checks.fail_if(
                (codes.min() < -1) | (codes.max() > 1), "truths",
                lambda: f"must hold 1 (acceptable), 0 (wrong) or -1 (invalid), got {int(codes[(codes < -1) | (codes > 1)][0])}",
            )
        weights = prepare_sample_weight(self.name, sample_weight, (n,), xp, "float64", checks)
        if codes.dtype.kind == "b":
            acceptable, valid = codes, None
        else:
            acceptable, valid = codes == 1, codes >= 0
        # Whether any column is invalid, and whether every row has a valid acceptable
        # column, travel with the checks: one transfer for the whole call.
        if codes.size:
            checks.request((acceptable & valid).any(axis=1).all() if valid is not None else acceptable.any(axis=1).all())
            if valid is not None:
                checks.request(valid.all())
        flags = checks.run()
        all_gold = bool(flags[0]) if flags else True
        if valid is not None and (not flags or bool(flags[1])):
            valid = None
        row_weights = self._row_weights(acceptable, weights, c, xp)
        work_dtype = "float32" if guesses.dtype.itemsize < 4 else guesses.dtype
        grad, losses = partial_label_cross_entropy(
            xp, guesses, acceptable, valid=valid, row_weights=row_weights, gamma=self.gamma,
            divisor=divisor, want_grad=want_grad, all_gold=all_gold, grad_dtype=work_dtype,
        )
        if grad is not None:
            grad = restore_dtype(grad, guesses)
        return grad, losses.astype(work_dtype)

    def _row_weights(self, acceptable, weights, n_classes: int, xp):
        """Class weights (by the label of each row's acceptable classes) times sample weights, or None."""
        row_weights = weights.reshape(-1) if weights is not None else None
        columns = self._column_weights(n_classes, xp)
        if columns is not None:
            class_rows = row_weights_from_columns(xp, acceptable, *columns)
            row_weights = class_rows if row_weights is None else row_weights * class_rows
        return row_weights

    def weight_total(self, guesses, truths, *, sample_weight=None):
        """``reduction = "weights"``: the sum of the rows' weights (class times sample
        weight), rows without an acceptable class excluded."""
        float_array(self.name, "guesses", guesses, ndim=2)
        xp = array_module(guesses)
        n, c = guesses.shape
        codes = self._truth_codes(truths, guesses.shape, xp)
        acceptable = codes if codes.dtype.kind == "b" else codes == 1
        weights = prepare_sample_weight(self.name, sample_weight, (n,), xp, "float64")
        row_weights = self._row_weights(acceptable, weights, c, xp)
        if row_weights is None:
            row_weights = xp.ones((n,), dtype="float64")
        return xp.where(acceptable.any(axis=1), row_weights, 0.0).sum(dtype=xp.float64)

    def _truth_codes(self, truths, shape, xp):
        if isinstance(truths, (list, tuple)):
            host = numpy.asarray(truths) if len(truths) else numpy.zeros((0,) + tuple(shape[1:]), dtype="int8")
            truths = host
        if not is_array(truths):
            raise call_error(
                self.name, "truths", f"must be an (N, C) int or bool array of 1/0/-1 codes, got {type(truths).__name__}", TypeError
            )
        if truths.dtype.kind not in "biu":
            raise call_error(self.name, "truths", f"must hold ints or bools (1, 0, -1), got dtype {truths.dtype}", TypeError)
        if tuple(truths.shape) != tuple(shape):
            raise call_error(self.name, "truths", f"must have the guesses' shape {tuple(shape)}, got {tuple(truths.shape)}")
        try:
            return xp.asarray(truths)
        except TypeError as err:
            raise call_error(self.name, "truths", f"must be on the guesses' device ({err})", TypeError) from None


__all__ = ["PartialLabelCrossentropy"]
