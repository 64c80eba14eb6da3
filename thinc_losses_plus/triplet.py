"""Triplet margin loss: an anchor nearer its positive than its negative.

Guesses are a tuple ``(anchor, positive, negative)`` of ``(N, D)`` arrays; a
row is a triplet and gives one loss. ``normalize`` divides the loss and the
three gradients by N; ``sample_weight`` is one weight per triplet.
"""
import math
from typing import Any, Optional, Tuple

from thinc.backends import get_array_ops

from ._checks import call_error, check_bool, check_float
from ._core import LossCalculator
from .embedding import guess_tuple, row_norm, row_scale, weigh_tuple_result

Array = Any


# Maths ---------------------------------------------------------------------


def p_norm(u: Array, p: float) -> Array:
    """``||u||_p`` per row (rescaled by the row's max for p other than 1 and 2)."""
    xp = get_array_ops(u).xp
    if p == 2.0:
        return row_norm(u)
    if p == 1.0:
        return xp.abs(u).sum(axis=1)
    m = xp.abs(u).max(axis=1)
    safe = xp.where(m > 0, m, 1.0)
    return m * ((xp.abs(u) / safe[:, None]) ** p).sum(axis=1) ** (1.0 / p)


def p_norm_grad(u: Array, norm: Array, p: float) -> Array:
    """``d ||u||_p / du`` per row; 0 where ``u = 0`` (as PyTorch's norm)."""
    xp = get_array_ops(u).xp
    if p == 1.0:
        return xp.sign(u)
    safe = xp.where(norm > 0, norm, 1.0)[:, None]
    if p == 2.0:
        return u / safe
    return xp.sign(u) * (xp.abs(u) / safe) ** (p - 1.0)


def triplet_margin(
    a: Array, pos: Array, neg: Array, *, margin: float, p: float, eps: float, swap: bool, squared: bool,
    want_grad: bool,
) -> Tuple[Optional[Tuple[Array, Array, Array]], Array]:
    """``max(0, margin + f(d(a, pos)) - f(d(a, neg)))`` per row, ``d(x, y) = ||x - y + eps||_p``.

    ``f`` is the identity, or the square when ``squared``; with ``swap`` the
    negative distance is ``min(d(a, neg), d(pos, neg))``. Returns the
    gradients with respect to ``(a, pos, neg)``.
    """
    xp = get_array_ops(a).xp
    u, v = a - pos + eps, a - neg + eps
    du, dv = p_norm(u, p), p_norm(v, p)
    d_neg = dv
    if swap:
        w = pos - neg + eps
        dw = p_norm(w, p)
        use_v = dv <= dw
        d_neg = xp.where(use_v, dv, dw)
    f_pos, f_neg = (du * du, d_neg * d_neg) if squared else (du, d_neg)
    z = margin + f_pos - f_neg
    loss = xp.maximum(z, 0.0)
    if not want_grad:
        return None, loss
    active = (z > 0).astype(z.dtype)
    c_pos = active * (2.0 * du if squared else 1.0)
    c_neg = active * (2.0 * d_neg if squared else 1.0)
    gu = c_pos[:, None] * p_norm_grad(u, du, p)
    if swap:
        gv = (c_neg * use_v)[:, None] * p_norm_grad(v, dv, p)
        gw = (c_neg * ~use_v)[:, None] * p_norm_grad(w, dw, p)
        return (gu - gv, -gu - gw, gv + gw), loss
    gv = c_neg[:, None] * p_norm_grad(v, dv, p)
    return (gu - gv, -gu, gv), loss


# Calculator ----------------------------------------------------------------


class TripletMargin(LossCalculator):
    """Triplet margin loss: ``loss_i = max(0, margin + f(d(a_i, p_i)) - f(d(a_i, n_i)))``
    with ``d(x, y) = ||x - y + eps||_p`` (PyTorch's ``pairwise_distance``: eps is added
    to the difference). ``f`` is the identity (PyTorch ``TripletMarginLoss``) or,
    with ``squared``, the square (Gluon ``TripletLoss`` is ``squared=True, p=2, eps=0``).
    With ``swap`` the negative distance is ``min(d(a, n), d(p, n))`` (Balntas et al.).

    The gradient is a tuple ``(dL/da, dL/dp, dL/dn)``, the exact derivative
    (0 for a triplet that satisfies the margin; a zero difference has a zero
    norm gradient, as PyTorch's).

    Shapes: guesses a tuple ``(anchor, positive, negative)`` of ``(N, D)``
    floats. Truths must be ``None``: a triplet carries its own targets.

    Args:
        normalize: divide the loss and the gradients by N (triplets).
        margin: the required gap between the distances; >= 0.
        p: the norm's degree; >= 1.
        eps: added to each difference before the norm; >= 0.
        swap: use the closer of anchor and positive to the negative.
        squared: compare squared distances.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import TripletMargin
        >>> anchor = numpy.asarray([[0.0, 0.0]])
        >>> positive = numpy.asarray([[3.0, 4.0]])
        >>> negative = numpy.asarray([[0.0, 2.0]])
        >>> (ga, gp, gn), loss = TripletMargin(margin=1.0, eps=0.0)((anchor, positive, negative), None)
        >>> loss  # 1 + 5 - 2
        4.0
        >>> ga.round(6).tolist(), gn.round(6).tolist()
        ([[-0.6, 0.2]], [[0.0, -1.0]])

    Config::

        [loss]
        @losses = "TripletMargin.v1"
        margin = 1.0
        p = 2.0
        eps = 1e-6
        swap = false
        squared = false

    References:
        Balntas et al., "Learning local feature descriptors with triplets and
        shallow convolutional neural networks", BMVC 2016. PyTorch
        ``torch.nn.TripletMarginLoss``:
        https://pytorch.org/docs/stable/generated/torch.nn.TripletMarginLoss.html;
        Gluon ``mxnet.gluon.loss.TripletLoss``.
    """

    name = "TripletMargin"

    def __init__(
        self,
        *,
        normalize: bool = True,
        margin: float = 1.0,
        p: float = 2.0,
        eps: float = 1e-6,
        swap: bool = False,
        squared: bool = False,
    ):
        super().__init__(normalize=normalize)
        finite = dict(high=math.inf, high_open=True)
        self.margin = check_float(self.name, "margin", margin, low=0.0, **finite)
        self.p = check_float(self.name, "p", p, low=1.0, **finite)
        self.eps = check_float(self.name, "eps", eps, low=0.0, **finite)
        self.swap = check_bool(self.name, "swap", swap)
        self.squared = check_bool(self.name, "squared", squared)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        a, pos, neg = guess_tuple(self.name, guesses, ("anchor", "positive", "negative"))
        if truths is not None:
            raise call_error(
                self.name, "truths", f"must be None (a triplet carries its own targets), got {type(truths).__name__}",
                TypeError,
            )
        xp, n = get_array_ops(a).xp, a.shape[0]
        weights, scale = row_scale(self.name, sample_weight, n, xp, a.dtype, divisor)
        grads, per_example = triplet_margin(
            a, pos, neg, margin=self.margin, p=self.p, eps=self.eps, swap=self.swap, squared=self.squared,
            want_grad=want_grad,
        )
        return weigh_tuple_result(grads, per_example, weights, scale, guesses)
