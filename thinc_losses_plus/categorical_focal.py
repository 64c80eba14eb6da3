"""The focal loss (Lin et al., 2017) of the softmax family."""
import math
from typing import Optional, Sequence, Union


from ._categorical import _Categorical, check_label_smoothing, check_smoothing_for, dense_target
from ._checks import check_float
from ._core import ELEMENTS, EXAMPLES, WEIGHTS
from ._inputs import is_array, restore_dtype
from .functional.focal import softmax_focal_cross_entropy, softmax_focal_cross_entropy_with_integer_labels
from .labels import ClassWeights, LabelScheme


class CategoricalFocalCrossentropy(_Categorical):
    """Focal loss (Lin et al., 2017) for softmax outputs.

    Down-weights well-classified rows by ``(1 - p)^gamma``::

        loss = -alpha * sum_i sum_c w_c * t_ic * (1 - p_ic)^gamma * log(p_ic) / n

    With ``gamma = 0`` and ``alpha = 1`` this is the categorical
    cross-entropy. The gradient is the exact derivative with respect to the
    logits: ``(g - p * sum_c g_c) / n`` with
    ``g_c = alpha w_c t_c (gamma (1-p_c)^(gamma-1) p_c log p_c - (1-p_c)^gamma)``
    (``log p`` is ``log(p + 1e-9)`` for probability guesses). Truths: dense
    target rows, or labels (ints or names) with the settings of
    :class:`SparseCategoricalCrossentropy`. A negative label ``neg_prefix + y``
    scores "not y" as ``-alpha w_y p_y^gamma log(1 - p_y)`` (gradient on
    column y only). ``alpha`` is a scalar factor (Keras); per-class balancing
    is ``class_weights``.

    Shapes: guesses ``(N, C)`` probabilities (logits with ``from_logits``)
    or a ``Ragged`` of them; truths ``(N, C)`` target distributions or ``N``
    labels.

    Args:
        normalize: divide the loss and the gradient by N.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        gamma: focusing parameter, >= 0 (0 gives the cross-entropy).
        alpha: scalar factor on the whole loss, > 0.
        names: column names; string labels are mapped through them.
        missing_value: a label (int or str) whose rows are masked; None
            masks ``None`` labels.
        neg_prefix: prefix of negative labels ("not X"), e.g. "!".
        label_smoothing: ``e`` in [0, (C-1)/C): ``1 - e`` on the label,
            ``e / (C - 1)`` on every other class.
        from_logits: the guesses are logits (softmax computed inside).
        class_weights: a list indexed by class, or a dict name -> weight
            (absent names weigh 1.0).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import CategoricalFocalCrossentropy
        >>> loss_calc = CategoricalFocalCrossentropy(gamma=2.0)
        >>> guesses = numpy.asarray([[0.9, 0.1], [0.5, 0.5]], dtype="f")
        >>> round(loss_calc.get_loss(guesses, [0, 1]), 5)  # -(0.01 log 0.9 + 0.25 log 0.5) / 2
        0.08717

    Config::

        [loss]
        @losses = "CategoricalFocalCrossentropy.v1"
        gamma = 2.0
        class_weights = [1.0, 3.0]

    References: Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object
    Detection. ICCV 2017. https://arxiv.org/abs/1708.02002
    """

    name = "CategoricalFocalCrossentropy"
    takes_labels = True
    reductions = (EXAMPLES, ELEMENTS, WEIGHTS)

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        gamma: float = 2.0,
        alpha: float = 1.0,
        class_weights: ClassWeights = None,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
        neg_prefix: Optional[str] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
    ):
        labels = LabelScheme(
            self.name, names=names, missing_value=missing_value, neg_prefix=neg_prefix, class_weights=class_weights
        )
        self.gamma = check_float(self.name, "gamma", gamma, low=0.0, high=math.inf, high_open=True)
        self.alpha = check_float(self.name, "alpha", alpha, low=0.0, high=math.inf, low_open=True, high_open=True)
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing, labels.names)
        self._init_common(normalize=normalize, weight=weight, reduction=reduction, from_logits=from_logits, labels=labels)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        batch = self._batch(guesses)
        work, xp = batch.work, batch.xp
        n, c = work.shape
        settings = dict(gamma=self.gamma, from_logits=self.from_logits, divisor=divisor, want_grad=want_grad)
        negative = indices = None
        if is_array(truths) and truths.dtype.kind == "f":
            # Dense target rows: missing_value is an argmax (an int, or Thinc 9.1's string of one).
            target, missing = dense_target(self.name, batch, truths, self.labels, self.label_smoothing)
        else:
            check_smoothing_for(self.name, self.label_smoothing, c)
            indices, missing, negative = self.labels.to_indices(truths, n, c, xp, batch.checks)
            if not self.label_smoothing:  # one-hot targets: the O(N) kernel
                weights = self._weights(batch, sample_weight, scale=self.alpha)
                span = batch.run()
                del batch  # and with it the checks' diagnostics (row sums of N): peak memory
                grad, losses = softmax_focal_cross_entropy_with_integer_labels(
                    xp, work, indices, span=span, weights=weights, missing=missing, negative=negative, **settings
                )
                return restore_dtype(grad, guesses), losses
        weights = self._weights(batch, sample_weight, scale=self.alpha)
        span = batch.run()
        del batch  # as above
        if indices is not None:
            off = self.label_smoothing / (c - 1)
            target = xp.full((n, c), off, dtype=work.dtype)
            target[xp.arange(n), indices] = 1.0 - self.label_smoothing
            if negative is not None:
                target[negative] = 0
        grad, losses = softmax_focal_cross_entropy(
            xp, work, target, span=span, weights=weights, missing=missing, negative=negative, labels=indices, **settings
        )
        return restore_dtype(grad, guesses), losses
