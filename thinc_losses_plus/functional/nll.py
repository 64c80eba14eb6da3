"""Maths of the negative log-likelihood of log-probability guesses (PyTorch's ``NLLLoss``,
Gluon's ``from_logits=True``): the gradient with respect to the log-probabilities.

Same conventions as :mod:`thinc_losses_plus.functional.softmax`.
"""
from .softmax import mask_and_weight_rows, row_sums, split_weights


def nll_with_integer_labels(
    xp,
    guesses,
    labels,
    *,
    label_smoothing: float = 0.0,
    weights=None,
    missing=None,
    divisor: float = 1,
    want_grad: bool = True,
):
    """Negative log-likelihood of log-probabilities ``l`` against integer labels.

    Row loss ``-sum_c w_c t_c l_c`` with the (smoothed) one-hot target ``t``;
    the gradient is the exact derivative with respect to the log-probabilities,
    ``-w * t`` (divided by ``divisor``): PyTorch's ``nll_loss``. ``missing`` rows
    are masked; ``weights`` as in :func:`softmax_cross_entropy_with_integer_labels`.
    """
    n, c = guesses.shape
    on = 1.0 - label_smoothing
    off = label_smoothing / (c - 1) if label_smoothing else 0.0
    row_w, elem_w = split_weights(weights)
    rows = xp.arange(n)
    full_w = None if elem_w is None else xp.broadcast_to(elem_w, (n, c))
    gold_w = 1.0 if full_w is None else full_w[rows, labels]
    losses = -(on - off) * gold_w * guesses[rows, labels]
    if off:
        weighted = guesses if full_w is None else guesses * full_w
        losses -= off * row_sums(xp, weighted)
    grad = None
    if want_grad:
        if off:
            grad = xp.full((n, c), -off, dtype=guesses.dtype) if full_w is None else -off * full_w
            grad = xp.ascontiguousarray(grad)
        else:
            grad = xp.zeros((n, c), dtype=guesses.dtype)
        grad[rows, labels] = -on * gold_w
        if divisor != 1:
            grad /= divisor
    return mask_and_weight_rows(xp, grad, losses, missing, row_w)


def nll(xp, guesses, target, *, weights=None, missing=None, divisor: float = 1, want_grad: bool = True):
    """Negative log-likelihood of log-probabilities against dense target rows.

    Row loss ``-sum_c w_c t_c l_c``; gradient ``-w * t`` (exact, with respect
    to the log-probabilities), divided by ``divisor``.
    """
    row_w, elem_w = split_weights(weights)
    weighted = target if elem_w is None else target * elem_w
    losses = -row_sums(xp, guesses * weighted)
    grad = None
    if want_grad:
        grad = xp.negative(weighted)
        if divisor != 1:
            grad /= divisor
    return mask_and_weight_rows(xp, grad, losses, missing, row_w)
