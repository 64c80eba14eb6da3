"""Losses for imbalanced and noisy labels: soft Dice, Tversky, asymmetric loss, generalized cross-entropy.

:class:`Dice`, :class:`Tversky` and :class:`AsymmetricLoss` score independent
sigmoid outputs (the sigmoid family, like
:class:`~thinc_losses_plus.binary.BinaryCrossentropy`): guesses ``(N,)`` or
``(N, C)`` probabilities (Thinc's ``Logistic`` / ``Sigmoid`` outputs, spaCy's
``textcat_multilabel``) or logits with ``from_logits``; truths of the same
shape, targets in ``[0, 1]``. Given probabilities their gradient is the exact
``dL/dp``; given logits, the exact ``dL/dx``.

:class:`GeneralizedCrossentropy` is a softmax-family loss, like
:class:`~thinc_losses_plus.categorical.SparseCategoricalCrossentropy`, with
its label settings; given probabilities its gradient is with respect to the
logits behind them (what Thinc's ``Softmax`` layer expects).

The classes hold settings and validate inputs; the maths lives in
:mod:`thinc_losses_plus.functional.overlap`, ``asymmetric`` and
``generalized_cross_entropy``.
"""
import math
from typing import Optional, Sequence, Union

import numpy

from ._checks import check_bool, check_choice, check_float, setting_error
from ._core import Evaluation, LossCalculator
from ._inputs import (
    Checks,
    ElementwiseRows,
    array_module,
    check_loss_overflow,
    count_rows,
    elementwise_grad,
    elementwise_inputs,
    elementwise_weights,
    is_array,
    prepare_sample_weight,
    restore_dtype,
)
from .binary import sigmoid_targets
from .functional.blocks import OnePassElements
from .categorical import _Categorical, dense_target
from .functional.asymmetric import asymmetric_loss, asymmetric_loss_with_logits
from .functional.generalized_cross_entropy import (
    generalized_cross_entropy,
    generalized_cross_entropy_with_integer_labels,
)
from .functional.overlap import AVERAGES, SAMPLES, soft_dice_loss, tversky_loss
from .labels import ClassWeights, LabelScheme, check_missing_target

__all__ = ["Dice", "Tversky", "AsymmetricLoss", "GeneralizedCrossentropy"]

POSITIVE = dict(low=0.0, high=math.inf, low_open=True, high_open=True)
NON_NEGATIVE = dict(low=0.0, high=math.inf, high_open=True)


class _Overlap(ElementwiseRows, LossCalculator):
    """What Dice and Tversky share: the groups (rows or columns), weights, missing values."""

    #: One Dice/Tversky score per group: "elements" would not mean PyTorch's elementwise mean.
    reductions = ("examples",)

    def _init_overlap(
        self, *, normalize: bool, smooth: float, average: str, from_logits: bool, missing_value,
        weight: float = 1.0, reduction: str = "examples",
    ) -> None:
        LossCalculator.__init__(self, normalize=normalize, weight=weight, reduction=reduction)
        self.smooth = check_float(self.name, "smooth", smooth, **POSITIVE)
        self.average = check_choice(self.name, "average", average, AVERAGES)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.missing_value = check_missing_target(self.name, missing_value)

    def evaluate(self, guesses, truths, *, sample_weight=None, want_grad: bool = True) -> Evaluation:
        """``"samples"``: the base's rows and N. ``"macro"``: the divisor is the number of columns C."""
        if self.average == SAMPLES:
            return super().evaluate(guesses, truths, sample_weight=sample_weight, want_grad=want_grad)
        count_rows(self.name, guesses)
        n_columns = 1 if guesses.ndim == 1 else int(guesses.shape[1])
        divisor = n_columns if (self.normalize and n_columns > 0) else 1
        grad, per_example = self.compute(
            guesses, truths, sample_weight=sample_weight, divisor=divisor, want_grad=want_grad
        )
        return Evaluation(grad, per_example, divisor)

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        x, t = elementwise_inputs(self.name, guesses, truths)
        xp = array_module(x)
        checks = Checks(self.name, xp)
        t, keep = sigmoid_targets(checks, x, t, from_logits=self.from_logits, missing_value=self.missing_value)
        weights = prepare_sample_weight(self.name, sample_weight, guesses.shape, xp, x.dtype, checks)
        row_weights = None
        if weights is not None:
            if weights.ndim == 1:  # (N,) guesses: one entry, one weight per example
                weights = weights.reshape(-1, 1)
            if self.average == SAMPLES and weights.shape[1] == 1:  # an example's multiplicity: it scales its row's loss
                row_weights, weights = weights, None
        inside = keep if weights is None else (weights if keep is None else weights * keep)
        with numpy.errstate(all="ignore"):  # bad inputs are reported by the checks below
            # the row weights and the divisor are applied block by block, inside the maths
            grad, per_example = self._maths(xp, x, t, inside, row_weights, divisor, want_grad)
        check_loss_overflow(checks, per_example)
        checks.run()
        return elementwise_grad(grad, guesses), per_example

    def _maths(self, xp, x, t, weights, row_weights, divisor: float, want_grad: bool):
        raise NotImplementedError


class Dice(_Overlap):
    """Soft Dice loss (Milletari et al. 2016), with Li et al.'s self-adjusting variant.

    For probabilities ``p`` (``s(x)`` for logits with ``from_logits``),
    targets ``t`` in ``[0, 1]`` and ``s = smooth``, the loss of a group of
    entries is::

        L = 1 - (2 sum q t + s) / (sum q + sum t + s)         (squared_denominator: sum q^2 + sum t^2)
        q = (1 - p)^a p                                        (a = self_adjusting; q = p when a = 0)

    ``a > 0`` is the self-adjusting Dice loss of Li et al. (2020), which
    down-weights the easy entries the way focal loss does (``a = 1``: their
    ``DSC`` loss, ``1 - (2 (1 - p) p t + s) / ((1 - p) p + t + s)`` for one
    entry). ``squared_denominator = true`` is Milletari's V-Net form.
    Note that ``q`` peaks at ``p = 1 / (1 + a)``, where its gradient
    vanishes: with ``a = 1`` a model whose outputs start at ``p = 0.5``
    (spaCy's zero-initialised ``TextCatBOW``) gets no gradient at all; use
    the factor on a model that has started training, or a small ``a``.

    The groups, ``average``:

    * ``"samples"`` (the default): each **row**, its Dice over its columns
      (scikit-learn's ``average="samples"``; for ``(N,)`` guesses, Li et
      al.'s per-example DSC). The loss of an example is its row's ``L``;
      ``normalize`` divides by N: the mean over the examples.
    * ``"macro"``: each **column** (class), its Dice over the batch; the
      batch loss is ``sum_c L_c`` and ``normalize`` divides it by the number
      of columns C: the macro average over the classes. (Not by N: the
      sums inside each class already grow with N, so ``L_c`` is a batch-size
      independent ratio.) ``get_loss_per_example`` gives each row's share
      of ``sum_c L_c``: writing ``L_c = (U_c - 2 I_c) / (U_c + s)`` with
      ``I_c = sum_i q t`` and ``U_c = sum_i (q + t)``, row i's share is
      ``sum_c (q + t - 2 q t)_ic / (U_c + s)`` (its soft false positives
      and negatives over its class's denominator; ``(q - t)^2`` with the
      squared denominator), non-negative, and the shares add up to the loss.

    ``sample_weight`` counts as a multiplicity: a weight ``k`` per example
    (``(N,)`` or ``(N, 1)``) counts it ``k`` times, i.e. multiplies its
    row's loss (``"samples"``) or its terms inside every class's sums
    (``"macro"``, where the loss is therefore not linear in the weights); a
    weight per element (the guesses' shape) multiplies the entry's terms
    inside its group's sums. A weight 0, like a truth equal to
    ``missing_value``, removes the entry from its group: the same loss and
    gradient as slicing it out.

    Shapes: guesses ``(N, C)`` or ``(N,)`` probabilities (logits with
    ``from_logits``); truths the same shape, targets in ``[0, 1]`` (soft
    targets allowed).

    Gradient: the exact derivative of the returned loss with respect to the
    guesses: ``dL/dp`` for probabilities (what Thinc's ``Logistic`` and
    ``Sigmoid`` layers take), ``dL/dx`` for logits. For ``0 < a < 1`` the
    derivative of ``(1 - p)^a`` is infinite at ``p = 1`` and is evaluated at
    ``1 - p = 1e-7``; with logits it is finite everywhere.

    Args:
        normalize: divide the loss and the gradient by N (``"samples"``) or
            by C (``"macro"``).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: only "examples" (N, or C
            for ``"macro"``): the loss has one term per group, not per element.
        smooth: ``s > 0``, added to the numerator and the denominator (an
            empty group, no positives and ``p = 0``, then has loss 0).
        average: ``"samples"`` (Dice of each row) or ``"macro"`` (Dice of
            each column over the batch).
        squared_denominator: ``sum q^2 + sum t^2`` in the denominator
            (Milletari et al.) instead of ``sum q + sum t``.
        self_adjusting: the exponent ``a >= 0`` of Li et al.'s factor
            ``(1 - p)^a``; 0 is the plain soft Dice loss.
        from_logits: the guesses are logits (the sigmoid is taken inside).
        missing_value: truth entries equal to it are removed from their
            group (as a weight 0). Must lie outside [0, 1].

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import Dice
        >>> loss_calc = Dice()
        >>> guesses = numpy.asarray([[0.8, 0.2, 0.0]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0, 0.0]], dtype="f")
        >>> round(loss_calc.get_loss(guesses, truths), 5)  # 1 - (2 * 0.8 + 1) / (1.0 + 1.0 + 1)
        0.13333
        >>> macro = Dice(average="macro", smooth=0.1)
        >>> guesses = numpy.asarray([[0.9, 0.2], [0.3, 0.6]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0], [0.0, 1.0]], dtype="f")
        >>> round(macro.get_loss(guesses, truths), 4)  # mean of 1 - (1.8 + .1)/(2.2 + .1), 1 - (1.2 + .1)/(1.8 + .1)
        0.2449

    Config::

        [loss]
        @losses = "Dice.v1"
        average = "macro"
        smooth = 1.0
        self_adjusting = 1.0

    References:
        Milletari, Navab, Ahmadi (2016), V-Net: Fully Convolutional Neural
        Networks for Volumetric Medical Image Segmentation,
        https://arxiv.org/abs/1606.04797
        Li, Sun, Meng, Liang, Wu, Li (2020), Dice Loss for Data-imbalanced
        NLP Tasks, ACL 2020, https://aclanthology.org/2020.acl-main.45/
    """

    name = "Dice"

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        smooth: float = 1.0,
        average: str = "samples",
        squared_denominator: bool = False,
        self_adjusting: float = 0.0,
        from_logits: bool = False,
        missing_value: Optional[float] = None,
    ):
        self._init_overlap(
            normalize=normalize, smooth=smooth, average=average, from_logits=from_logits, missing_value=missing_value,
            weight=weight, reduction=reduction,
        )
        self.squared_denominator = check_bool(self.name, "squared_denominator", squared_denominator)
        self.self_adjusting = check_float(self.name, "self_adjusting", self_adjusting, **NON_NEGATIVE)

    def _maths(self, xp, x, t, weights, row_weights, divisor: float, want_grad: bool):
        return soft_dice_loss(
            xp,
            x,
            t,
            smooth=self.smooth,
            average=self.average,
            squared_denominator=self.squared_denominator,
            self_adjusting=self.self_adjusting,
            from_logits=self.from_logits,
            weights=weights,
            row_weights=row_weights,
            divisor=divisor,
            want_grad=want_grad,
        )


class Tversky(_Overlap):
    """Tversky loss (Salehi et al. 2017): a Dice loss that weighs false negatives and positives apart.

    For probabilities ``p`` (``s(x)`` for logits with ``from_logits``) and
    targets ``t``, over a group of entries (see ``average``)::

        TP = sum p t,   FP = sum p (1 - t),   FN = sum (1 - p) t
        L  = 1 - (TP + s) / (TP + alpha FP + beta FN + s)

    ``alpha = beta = 0.5`` is the soft :class:`Dice` loss with smooth
    ``2 s``; ``alpha = beta = 1`` the soft Jaccard (IoU) loss. The defaults,
    ``alpha = 0.3`` and ``beta = 0.7``, are those Salehi et al. found best:
    a missed positive costs more than a false alarm, which favours recall on
    rare classes. The groups, the per-example losses and ``normalize`` are
    those of :class:`Dice`: each row (``"samples"``: the loss of an
    example, ``normalize`` divides by N), or each column over the batch
    (``"macro"``: ``sum_c L_c``, ``normalize`` divides by C, and
    ``get_loss_per_example`` gives each row's share
    ``sum_c (alpha p (1 - t) + beta (1 - p) t)_ic / (TP_c + alpha FP_c + beta FN_c + s)``).
    ``sample_weight`` and ``missing_value`` work as in :class:`Dice`.

    Shapes: guesses ``(N, C)`` or ``(N,)`` probabilities (logits with
    ``from_logits``); truths the same shape, targets in ``[0, 1]``.

    Gradient: the exact derivative of the returned loss with respect to the
    guesses: ``dL/dp`` for probabilities (what Thinc's ``Logistic`` and
    ``Sigmoid`` layers take), ``dL/dx`` for logits.

    Args:
        normalize: divide the loss and the gradient by N (``"samples"``) or
            by C (``"macro"``).
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: only "examples" (N, or C
            for ``"macro"``): the loss has one term per group, not per element.
        alpha: weight of the false positives, ``>= 0``.
        beta: weight of the false negatives, ``>= 0`` (not both 0).
        smooth: ``s > 0``, added to the numerator and the denominator.
        average: ``"samples"`` (each row) or ``"macro"`` (each column over
            the batch).
        from_logits: the guesses are logits (the sigmoid is taken inside).
        missing_value: truth entries equal to it are removed from their
            group (as a weight 0). Must lie outside [0, 1].

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import Tversky
        >>> loss_calc = Tversky(smooth=1.0)
        >>> guesses = numpy.asarray([[0.8, 0.2, 0.0]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0, 0.0]], dtype="f")
        >>> round(loss_calc.get_loss(guesses, truths), 5)  # (0.3 * 0.2 + 0.7 * 0.2) / (0.8 + 0.06 + 0.14 + 1)
        0.1

    Config::

        [loss]
        @losses = "Tversky.v1"
        alpha = 0.3
        beta = 0.7
        average = "macro"

    References:
        Salehi, Erdogmus, Gholipour (2017), Tversky loss function for image
        segmentation using 3D fully convolutional deep networks,
        https://arxiv.org/abs/1706.05721
    """

    name = "Tversky"

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1.0,
        average: str = "samples",
        from_logits: bool = False,
        missing_value: Optional[float] = None,
    ):
        self._init_overlap(
            normalize=normalize, smooth=smooth, average=average, from_logits=from_logits, missing_value=missing_value,
            weight=weight, reduction=reduction,
        )
        self.alpha = check_float(self.name, "alpha", alpha, **NON_NEGATIVE)
        self.beta = check_float(self.name, "beta", beta, **NON_NEGATIVE)
        if self.alpha == 0.0 and self.beta == 0.0:
            raise setting_error(self.name, "alpha", "and 'beta' must not both be 0 (the loss would be 0 for any guesses)")

    def _maths(self, xp, x, t, weights, row_weights, divisor: float, want_grad: bool):
        return tversky_loss(
            xp,
            x,
            t,
            alpha=self.alpha,
            beta=self.beta,
            smooth=self.smooth,
            average=self.average,
            from_logits=self.from_logits,
            weights=weights,
            row_weights=row_weights,
            divisor=divisor,
            want_grad=want_grad,
        )


class AsymmetricLoss(OnePassElements, ElementwiseRows, LossCalculator):
    """Asymmetric loss for multi-label classification (Ridnik et al. 2021, ASL).

    Each entry, with probability ``p`` (``s(x)`` for logits with
    ``from_logits``) and target ``t``, contributes::

        -t (1 - p)^gamma_pos log(p) - (1 - t) p_m^gamma_neg log(1 - p_m),    p_m = max(p - clip, 0)

    Negatives are focused harder than positives (``gamma_neg > gamma_pos``)
    and, by the probability shifting ``clip = m``, negatives with ``p <= m``
    cost nothing: in multi-label data with many labels most entries are
    easy negatives, and some "negatives" are missing positive labels. The
    defaults ``gamma_pos = 0``, ``gamma_neg = 4``, ``clip = 0.05`` are the
    paper's. ``gamma_pos = gamma_neg = gamma`` with ``clip = 0`` is
    :class:`~thinc_losses_plus.binary.BinaryFocalCrossentropy` (``alpha``
    None); all three 0 is the binary cross-entropy. Soft targets mix the two
    terms linearly. The loss of an example is the **sum over the columns of
    its row**; ``normalize`` divides by the number of rows N (the official
    implementation returns the sum over the batch: ``normalize = false``).

    Shapes: guesses ``(N, C)`` or ``(N,)`` probabilities (logits with
    ``from_logits``); truths the same shape, targets in ``[0, 1]``.

    Gradient: the exact derivative with respect to the guesses: ``dL/dp``
    for probabilities (what Thinc's ``Logistic`` and ``Sigmoid`` layers
    take; ``p`` is clipped to ``[1e-7, 1 - 1e-7]`` and the loss and gradient
    are evaluated there, as :class:`~thinc_losses_plus.binary.BinaryCrossentropy`),
    ``dL/dx`` for logits, computed stably (finite for ``|x| = 1e4``). The
    focusing weights are differentiated too (the official code's
    ``disable_torch_grad_focal_loss = False``); at ``p = clip`` the
    derivative of the negative term is taken from the left (0).

    Args:
        normalize: divide the loss and the gradient by N.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N) or
            "elements" (the N x C terms: PyTorch's ``"mean"``).
        gamma_pos: focusing exponent of the positive entries, ``>= 0``.
        gamma_neg: focusing exponent of the negative entries, ``>= 0``.
        clip: the probability margin ``m`` in ``[0, 1)`` subtracted from the
            negatives' probabilities (0: no shifting).
        from_logits: the guesses are logits (the sigmoid is taken inside).
        missing_value: truth entries equal to it are masked (term and
            gradient 0; rows still count in N). Must lie outside [0, 1].

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import AsymmetricLoss
        >>> loss_calc = AsymmetricLoss()
        >>> guesses = numpy.asarray([[0.9, 0.55, 0.04]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0, 0.0]], dtype="f")
        >>> round(loss_calc.get_loss(guesses, truths), 5)  # -log(0.9) - 0.5**4 log(0.5); 0.04 < clip costs 0
        0.14868

    Config::

        [loss]
        @losses = "AsymmetricLoss.v1"
        gamma_pos = 0.0
        gamma_neg = 4.0
        clip = 0.05

    References:
        Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter, Zelnik-Manor
        (2021), Asymmetric Loss For Multi-Label Classification, ICCV 2021,
        https://arxiv.org/abs/2009.14119 (code: https://github.com/Alibaba-MIIL/ASL)
    """

    name = "AsymmetricLoss"
    elementwise = True  # one term per element: "elements" divides by N x C

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        from_logits: bool = False,
        missing_value: Optional[float] = None,
    ):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.gamma_pos = check_float(self.name, "gamma_pos", gamma_pos, **NON_NEGATIVE)
        self.gamma_neg = check_float(self.name, "gamma_neg", gamma_neg, **NON_NEGATIVE)
        self.clip = check_float(self.name, "clip", clip, low=0.0, high=1.0, high_open=True)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.missing_value = check_missing_target(self.name, missing_value)

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        return self.elementwise_pass(guesses, truths, sample_weight=sample_weight, divisor=divisor, want_grad=want_grad)

    def elementwise_pass(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool, want_terms: bool = False):
        """:meth:`compute`; with ``want_terms``, ``(terms, per_example)`` (:class:`OnePassElements`)."""
        x, t = elementwise_inputs(self.name, guesses, truths)
        xp = array_module(x)
        checks = Checks(self.name, xp)
        t, keep = sigmoid_targets(checks, x, t, from_logits=self.from_logits, missing_value=self.missing_value)
        weights = elementwise_weights(self.name, sample_weight, guesses, x, checks, keep)
        maths = asymmetric_loss_with_logits if self.from_logits else asymmetric_loss
        with numpy.errstate(all="ignore"):  # bad inputs and overflows are reported by the checks below
            grad, per_example = maths(
                xp, x, t, gamma_pos=self.gamma_pos, gamma_neg=self.gamma_neg, clip=self.clip,
                weights=weights, divisor=divisor, want_grad=want_grad, terms=xp.empty_like(x) if want_terms else None,
            )
        check_loss_overflow(checks, per_example)
        checks.run()
        return (grad if want_terms else elementwise_grad(grad, guesses)), per_example


class GeneralizedCrossentropy(_Categorical):
    """Generalized cross-entropy, the Lq loss (Zhang & Sabuncu 2018): robust to noisy labels.

    For each row with label ``y`` and class weight ``w_y``::

        loss = sum_i w_y (1 - p_iy^q) / q / n
        grad = w_y p_iy^q (p_i - onehot(y)) / n          (with respect to the logits)

    ``q -> 0`` is the cross-entropy ``-log p_y`` (its gradient ``p - onehot``);
    ``q = 1`` is ``1 - p_y``, half the mean absolute error of the
    probabilities, which is robust to label noise but slow to train. In
    between, the gradient is the cross-entropy's damped by ``p_y^q``: rows
    the model confidently gets "wrong" (often mislabelled ones) pull less.
    The loss of a row is at most ``w_y / q``. The default ``q = 0.7`` is the
    paper's.

    Truths are labels with the settings of
    :class:`~thinc_losses_plus.categorical.SparseCategoricalCrossentropy`
    (``names``, ``missing_value``, ``neg_prefix``, ``class_weights``), or
    dense target rows (a spaCy component's one-hot rows), whose row loss is
    ``sum_c w_c t_c (1 - p_c^q) / q`` (rows whose argmax equals an int
    ``missing_value`` are masked). A missing label masks its row (it still
    counts in ``n``). A negative label ``neg_prefix + y`` ("not y") scores
    the event "not y" the same way, ``w_y (1 - (1 - p_y)^q) / q``, with its
    gradient on column y only, ``w_y p_y (1 - p_y)^q``: the cross-entropy's
    negative-label gradient ``p_y`` as q -> 0.

    Shapes: guesses ``(N, C)`` probabilities (logits with ``from_logits``)
    or a ``Ragged`` of them; truths ``N`` labels (int array, list of ints or
    of strings) or ``(N, C)`` target rows.

    Gradient: with respect to the logits: given probabilities
    (``from_logits = false``) the guesses are taken to be ``softmax(logits)``,
    as Thinc's ``Softmax`` layer expects (its backward pass skips the
    softmax Jacobian); with ``from_logits = true`` the softmax is computed
    stably inside. ``log p`` is the exact ``log(p)`` (``p = 0`` gives the
    finite loss ``w / q``).

    Args:
        normalize: divide the loss and the gradient by N.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N; "elements"
            is the same, one term per row) or "weights" (the sum of the rows'
            ``w_y`` times their sample weights: PyTorch's weighted ``"mean"``).
        q: the exponent in ``(0, 1]``.
        names: column names; string labels are mapped through them.
        missing_value: a label (int or str) whose rows are masked; None
            masks ``None`` labels.
        neg_prefix: prefix of negative labels ("not X"), e.g. "!".
        from_logits: the guesses are logits (softmax computed inside).
        class_weights: a list indexed by class, a dict name -> weight
            (absent names weigh 1.0), or "balanced" (counted from the corpus).

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import GeneralizedCrossentropy
        >>> loss_calc = GeneralizedCrossentropy(q=0.5, names=["NOUN", "VERB"])
        >>> guesses = numpy.asarray([[0.81, 0.19], [0.75, 0.25]], dtype="f")
        >>> grad, loss = loss_calc(guesses, ["NOUN", "VERB"])
        >>> round(loss, 4)  # ((1 - 0.9) / 0.5 + (1 - 0.5) / 0.5) / 2
        0.6
        >>> grad.astype("float64").round(4).tolist()  # p_y^q (p - onehot) / 2
        [[-0.0855, 0.0855], [0.1875, -0.1875]]

    Config::

        [loss]
        @losses = "GeneralizedCrossentropy.v1"
        q = 0.7
        missing_value = "-"

    References:
        Zhang, Sabuncu (2018), Generalized Cross Entropy Loss for Training
        Deep Neural Networks with Noisy Labels, NeurIPS 2018,
        https://arxiv.org/abs/1805.07836
    """

    name = "GeneralizedCrossentropy"
    takes_labels = True
    reductions = ("examples", "elements", "weights")

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        q: float = 0.7,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
        neg_prefix: Optional[str] = None,
        from_logits: bool = False,
        class_weights: ClassWeights = None,
    ):
        labels = LabelScheme(
            self.name, names=names, missing_value=missing_value, neg_prefix=neg_prefix, class_weights=class_weights
        )
        self.q = check_float(self.name, "q", q, low=0.0, high=1.0, low_open=True)
        self._init_common(normalize=normalize, weight=weight, reduction=reduction, from_logits=from_logits, labels=labels)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        batch = self._batch(guesses)
        work, xp = batch.work, batch.xp
        n, c = work.shape
        settings = dict(q=self.q, from_logits=self.from_logits, divisor=divisor, want_grad=want_grad)
        if is_array(truths) and truths.dtype.kind == "f":
            target, missing = dense_target(self.name, batch, truths, self.labels, 0.0)
            weights = self._weights(batch, sample_weight)
            span = batch.run()
            with numpy.errstate(divide="ignore"):  # log(0) = -inf gives the finite 1 / q
                grad, losses = generalized_cross_entropy(
                    xp, work, target, span=span, weights=weights, missing=missing, **settings
                )
        else:
            labels = self.labels.to_indices(truths, n, c, xp, batch.checks)
            weights = self._weights(batch, sample_weight)
            span = batch.run()
            with numpy.errstate(divide="ignore"):
                grad, losses = generalized_cross_entropy_with_integer_labels(
                    xp, work, labels.indices, span=span, weights=weights, missing=labels.missing,
                    negative=labels.negative, **settings
                )
        return restore_dtype(grad, guesses), losses
