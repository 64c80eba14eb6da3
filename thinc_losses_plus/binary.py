"""Binary and multi-label losses (sigmoid family): cross-entropy and focal loss.

Guesses are ``(N,)`` or ``(N, C)`` arrays, one independent binary decision per
entry: probabilities (the output of Thinc's ``Sigmoid`` or ``Logistic``
layers) or, with ``from_logits=True``, the scores before the sigmoid. Truths
have the guesses' shape and hold targets in ``[0, 1]`` (soft targets allowed).

The loss of an *example* is the sum of its row's elementwise terms; with
``normalize`` the loss and the gradient are divided by the number of rows N.
The margin-based losses (hinge, logistic, multi-class margin) live in
:mod:`thinc_losses_plus.margin` and share the input helpers of
:mod:`thinc_losses_plus._binary_inputs`.
"""
import math
from typing import List, Optional

import numpy
from thinc.backends import get_array_ops

from ._binary_inputs import (
    PROB_EPS,
    ElementwiseCalculator,
    Weights,
    check_missing_target,
    check_weights,
    column_array,
    combine_weights,
    elementwise_inputs,
    finish,
    sigmoid_from_parts,
    sigmoid_targets,
    softplus_parts,
)
from ._checks import check_bool, check_float
from ._inputs import prepare_sample_weight
from .labels import ClassWeights, LabelScheme, NamedColumns, class_weight_list

# Maths ---------------------------------------------------------------------


def sigmoid_cross_entropy_with_logits(x, t, *, pos_weight=None, want_grad: bool = True):
    """Elementwise ``-[pw t log s(x) + (1 - t) log(1 - s(x))]`` and its derivative.

    Stable for any logit: ``-log s(x) = softplus(x) - x`` and
    ``-log(1 - s(x)) = softplus(x)``. The derivative with respect to ``x`` is
    ``s(x) (1 + (pw - 1) t) - pw t`` (``s(x) - t`` without ``pos_weight``).
    Returns ``(grad or None, loss)``.
    """
    xp = get_array_ops(x).xp
    loss, e = softplus_parts(x, xp)
    scale = None
    if pos_weight is None:
        pt = t
    else:
        pt = pos_weight * t
        scale = pt - t
        scale += 1.0  # (1 - t) + pw t
        loss *= scale
    buf = xp.multiply(pt, x)
    loss -= buf
    if not want_grad:
        return None, loss
    grad = sigmoid_from_parts(x, e, xp)
    if scale is not None:
        grad *= scale
    grad -= pt
    return grad, loss


def binary_cross_entropy(p, t, *, pos_weight=None, want_grad: bool = True, eps: float = PROB_EPS):
    """Elementwise ``-[pw t log p + (1 - t) log(1 - p)]`` and ``d/dp``.

    ``p`` is clipped to ``[eps, 1 - eps]`` first; the loss and the gradient
    ``-pw t / p + (1 - t) / (1 - p)`` are both evaluated at the clipped ``p``.
    Returns ``(grad or None, loss)``.
    """
    xp = get_array_ops(p).xp
    p = xp.clip(p, eps, 1.0 - eps)
    pt = t if pos_weight is None else pos_weight * t
    rest = 1.0 - t
    loss = xp.log(p)
    loss *= pt
    buf = xp.negative(p)
    xp.log1p(buf, out=buf)
    buf *= rest
    loss += buf
    xp.negative(loss, out=loss)
    if not want_grad:
        return None, loss
    grad = xp.subtract(1.0, p, out=buf)
    xp.divide(rest, grad, out=grad)
    grad -= xp.divide(pt, p, out=rest)
    return grad, loss


def power(q, gamma: float):
    """``q ** gamma`` with the common exponents computed by multiplication
    (numpy's general ``pow`` is ~30x slower than a product)."""
    if gamma == 0.0:
        return get_array_ops(q).xp.ones_like(q)
    if gamma == 1.0:
        return q.copy()
    if gamma == 2.0:
        return q * q
    if gamma == 3.0:
        return q * q * q
    return q**gamma


def _add_focusing_term(grad, ratio, modulator, t, ce, gamma: float, xp) -> None:
    """``grad += gamma * ratio * modulator * (1 - 2t) * ce``, reusing ``ratio``."""
    ratio *= modulator
    ratio *= ce
    one_minus_2t = xp.multiply(t, -2.0)
    one_minus_2t += 1.0
    ratio *= one_minus_2t
    ratio *= gamma
    grad += ratio


def sigmoid_focal_loss_with_logits(x, t, *, gamma: float, want_grad: bool = True):
    """Elementwise ``(1 - p_t)^gamma * ce`` on logits, and ``d/dx``.

    ``ce`` is the binary cross-entropy of ``s(x)`` and ``1 - p_t = s(x)(1 - t)
    + s(-x) t`` (torchvision's ``sigmoid_focal_loss``, before ``alpha``). With
    ``q = 1 - p_t`` the derivative is ``q^gamma (s(x) - t) + gamma q^gamma
    (s(x) s(-x) / q) (1 - 2t) ce``; ``s(x) s(-x) / q <= 2`` is computed
    directly, so saturated logits stay finite. Returns ``(grad or None, loss)``.
    """
    xp = get_array_ops(x).xp
    ce, e = softplus_parts(x, xp)
    ce -= xp.multiply(t, x)
    sig_neg = xp.clip(x, 0.0, math.inf)  # s(-x) = exp(-max(x, 0)) / (1 + e), no cancellation
    xp.negative(sig_neg, out=sig_neg)
    xp.exp(sig_neg, out=sig_neg)
    sig = sigmoid_from_parts(x, e, xp)  # e is now 1 + e
    sig_neg /= e
    q = xp.subtract(1.0, t, out=e)
    q *= sig
    q += xp.multiply(sig_neg, t)
    modulator = power(q, gamma)
    loss = modulator * ce
    if not want_grad:
        return None, loss
    ratio = None
    if gamma:
        ratio = sig_neg
        ratio *= sig
        ratio /= xp.clip(q, float(numpy.finfo(q.dtype).tiny), math.inf, out=q)
    grad = sig
    grad -= t
    grad *= modulator
    if ratio is not None:
        _add_focusing_term(grad, ratio, modulator, t, ce, gamma, xp)
    return grad, loss


def binary_focal_loss(p, t, *, gamma: float, want_grad: bool = True, eps: float = PROB_EPS):
    """Elementwise ``(1 - p_t)^gamma * ce`` on probabilities, and ``d/dp``.

    ``p`` is clipped to ``[eps, 1 - eps]`` (so ``q = 1 - p_t >= eps``); with
    ``ce = -[t log p + (1 - t) log(1 - p)]`` the derivative is ``q^gamma
    (-t/p + (1 - t)/(1 - p)) + gamma q^(gamma - 1) (1 - 2t) ce``, evaluated
    at the clipped ``p``. Returns ``(grad or None, loss)``.
    """
    xp = get_array_ops(p).xp
    _, ce = binary_cross_entropy(p, t, want_grad=False, eps=eps)
    p = xp.clip(p, eps, 1.0 - eps)
    rest = 1.0 - t
    q = p * rest
    one_minus_p = xp.subtract(1.0, p)
    q += xp.multiply(one_minus_p, t)
    modulator = power(q, gamma)
    loss = modulator * ce
    if not want_grad:
        return None, loss
    grad = xp.divide(rest, one_minus_p, out=one_minus_p)
    grad -= xp.divide(t, p, out=rest)
    grad *= modulator
    if gamma:
        ratio = xp.divide(1.0, q, out=q)
        _add_focusing_term(grad, ratio, modulator, t, ce, gamma, xp)
    return grad, loss


# Calculators ---------------------------------------------------------------


class BinaryCrossentropy(NamedColumns, ElementwiseCalculator):
    """Binary cross-entropy of independent sigmoid outputs (binary and multi-label).

    For guesses ``p`` (probabilities) and targets ``t`` in ``[0, 1]``, each entry
    contributes ``-w_c [pw_c t log p + (1 - t) log(1 - p)]``; the loss of an
    example is the **sum over the columns of its row** and ``normalize``
    divides by the number of rows N (PyTorch's ``"mean"`` averages over all
    N*C entries instead, a factor C apart).

    Shapes: guesses ``(N, C)`` or ``(N,)``; truths the same shape, floats, ints
    or bools (soft targets allowed).

    Gradient: given probabilities (the default), the exact ``dL/dp``; Thinc's
    ``Sigmoid`` and ``Logistic`` layers apply the sigmoid derivative
    themselves. ``p`` is clipped to ``[1e-7, 1 - 1e-7]`` (``PROB_EPS``) and the
    loss and gradient are evaluated at the clipped value, so ``p`` of exactly
    0 or 1 gives a finite loss and gradient. With ``from_logits=True`` guesses
    are logits ``x``, the loss is computed with a stable log-sigmoid and the
    gradient is with respect to ``x`` (``s(x) - t`` when unweighted).

    Args:
        normalize: divide the loss and the gradient by N.
        from_logits: guesses are logits instead of probabilities.
        pos_weight: weight of the positive term, a number or one per column
            (PyTorch ``BCEWithLogitsLoss(pos_weight=...)`` semantics).
        label_smoothing: ``e`` in ``[0, 1)``; targets become
            ``t (1 - e) + 0.5 e`` (Keras semantics).
        missing_value: truth entries equal to it are masked: their term and
            gradient are 0 (rows still count in N). Must lie outside [0, 1].
        class_weights: one weight per column, ``w_c`` above (PyTorch's
            ``weight`` broadcast over the rows): a list, or a dict label ->
            weight when ``names`` are known (absent labels weigh 1.0).
        names: optional column names, for dict ``class_weights``; a spaCy
            component (``textcat_multilabel_with_loss``) supplies its labels.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import BinaryCrossentropy
        >>> loss_calc = BinaryCrossentropy()
        >>> guesses = numpy.asarray([[0.9, 0.2]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0]], dtype="f")
        >>> grad, loss = loss_calc(guesses, truths)
        >>> round(loss, 4)  # -log(0.9) - log(0.8)
        0.3285
        >>> [round(float(g), 4) for g in grad[0]]  # -1/0.9, 1/0.8
        [-1.1111, 1.25]

    Config::

        [loss]
        @losses = "BinaryCrossentropy.v1"
        from_logits = false
        pos_weight = 2.0
        missing_value = -1

    References:
        PyTorch ``BCELoss`` / ``BCEWithLogitsLoss``:
        https://pytorch.org/docs/stable/generated/torch.nn.BCEWithLogitsLoss.html
        Keras ``BinaryCrossentropy`` (label smoothing):
        https://keras.io/api/losses/probabilistic_losses/#binarycrossentropy-class
    """

    name = "BinaryCrossentropy"

    def __init__(
        self,
        *,
        normalize: bool = True,
        from_logits: bool = False,
        pos_weight: Weights = None,
        label_smoothing: float = 0.0,
        missing_value: Optional[float] = None,
        class_weights: ClassWeights = None,
        names: Optional[List[str]] = None,
    ):
        super().__init__(normalize=normalize)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.pos_weight = check_weights(self.name, "pos_weight", pos_weight, allow_scalar=True)
        self.label_smoothing = check_float(self.name, "label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)
        self.missing_value = check_missing_target(self.name, missing_value)
        self.labels = LabelScheme(self.name, names=names, class_weights=class_weights)

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        x, t, xp = elementwise_inputs(self.name, guesses, truths)
        t, keep = sigmoid_targets(self.name, x, t, xp, from_logits=self.from_logits, missing_value=self.missing_value)
        n_columns = x.shape[1]
        self.labels.check_n_classes(n_columns)
        pos_weight = column_array(self.name, "pos_weight", self.pos_weight, n_columns, xp, x.dtype)
        class_weights = None
        if self.class_weights is not None:
            per_column = class_weight_list(self.name, self.class_weights, self.names, n_columns)
            class_weights = column_array(self.name, "class_weights", per_column, n_columns, xp, x.dtype)
        weight = combine_weights(keep, class_weights, prepare_sample_weight(self.name, sample_weight, x.shape, xp, x.dtype))
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        maths = sigmoid_cross_entropy_with_logits if self.from_logits else binary_cross_entropy
        grad, loss = maths(x, t, pos_weight=pos_weight, want_grad=want_grad)
        return finish(grad, loss, weight, divisor, guesses)


class BinaryFocalCrossentropy(ElementwiseCalculator):
    """Focal loss of independent sigmoid outputs (Lin et al., RetinaNet).

    Each entry contributes ``a_t (1 - p_t)^gamma ce``, where ``ce`` is the
    binary cross-entropy of the entry, ``p_t = p t + (1 - p)(1 - t)`` and
    ``a_t = alpha t + (1 - alpha)(1 - t)`` (``a_t = 1`` when ``alpha`` is None):
    torchvision's ``sigmoid_focal_loss``. The loss of an example is the **sum
    over the columns of its row**; ``normalize`` divides by the number of rows N.
    ``gamma = 0`` and ``alpha = None`` give :class:`BinaryCrossentropy`.

    Shapes: guesses ``(N, C)`` or ``(N,)``; truths the same shape, targets in
    ``[0, 1]`` (soft targets follow the same formula).

    Gradient: given probabilities (the default), the exact ``dL/dp``, with
    ``p`` clipped to ``[1e-7, 1 - 1e-7]`` as in :class:`BinaryCrossentropy`.
    With ``from_logits=True``, the gradient with respect to the logits,
    computed stably (finite for ``|x| = 1e4``).

    Args:
        normalize: divide the loss and the gradient by N.
        gamma: focusing parameter, ``>= 0``.
        alpha: None (no balancing), or a weight in ``[0, 1]`` for positives
            (negatives get ``1 - alpha``); RetinaNet uses 0.25.
        from_logits: guesses are logits instead of probabilities.
        missing_value: truth entries equal to it are masked (term and
            gradient 0). Must lie outside [0, 1].

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import BinaryFocalCrossentropy
        >>> loss_calc = BinaryFocalCrossentropy(gamma=2.0)
        >>> guesses = numpy.asarray([[0.9, 0.2]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0]], dtype="f")
        >>> round(loss_calc.get_loss(guesses, truths), 5)  # 0.1**2 * -log(0.9) + 0.2**2 * -log(0.8)
        0.00998

    Config::

        [loss]
        @losses = "BinaryFocalCrossentropy.v1"
        gamma = 2.0
        alpha = 0.25
        from_logits = true

    References:
        Lin et al. (2017), Focal Loss for Dense Object Detection,
        https://arxiv.org/abs/1708.02002
        torchvision ``sigmoid_focal_loss``:
        https://pytorch.org/vision/stable/generated/torchvision.ops.sigmoid_focal_loss.html
    """

    name = "BinaryFocalCrossentropy"

    def __init__(
        self,
        *,
        normalize: bool = True,
        gamma: float = 2.0,
        alpha: Optional[float] = None,
        from_logits: bool = False,
        missing_value: Optional[float] = None,
    ):
        super().__init__(normalize=normalize)
        self.gamma = check_float(self.name, "gamma", gamma, low=0.0, high=math.inf, high_open=True)
        self.alpha = None if alpha is None else check_float(self.name, "alpha", alpha, low=0.0, high=1.0)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.missing_value = check_missing_target(self.name, missing_value)

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        x, t, xp = elementwise_inputs(self.name, guesses, truths)
        t, keep = sigmoid_targets(self.name, x, t, xp, from_logits=self.from_logits, missing_value=self.missing_value)
        balance = None
        if self.alpha is not None:
            balance = (1.0 - self.alpha) + (2.0 * self.alpha - 1.0) * t  # alpha t + (1 - alpha)(1 - t)
        weight = combine_weights(keep, balance, prepare_sample_weight(self.name, sample_weight, x.shape, xp, x.dtype))
        maths = sigmoid_focal_loss_with_logits if self.from_logits else binary_focal_loss
        grad, loss = maths(x, t, gamma=self.gamma, want_grad=want_grad)
        return finish(grad, loss, weight, divisor, guesses)
