"""The KL divergence of softmax outputs from target distributions (knowledge distillation)."""
import math

from ._categorical import _Categorical, dense_target
from ._checks import check_float
from ._inputs import restore_dtype
from .functional.divergence import kl_divergence
from .labels import LabelScheme


class KLDivergence(_Categorical):
    """Kullback-Leibler divergence of softmax outputs from target distributions.

    For knowledge distillation: ``q = softmax(z / T)`` with ``T = temperature``::

        loss = T^2 * sum_i sum_c t_ic * (log t_ic - log q_ic) / n     (0 log 0 = 0)
        grad = T * (q_i * sum_c t_ic - t_i) / n

    The ``T^2`` factor (Hinton et al., 2015) keeps gradient magnitudes
    independent of ``T``. The gradient is with respect to the logits ``z``:
    the guesses themselves with ``from_logits=True``, else ``log p`` (for
    ``T = 1``, ``q = p`` and ``log q = log(p + 1e-9)``). Equals PyTorch's
    ``kl_div(log_q, t, reduction="sum") * T^2 / n``. The truths (teacher
    distributions) are used as given.

    Shapes: guesses ``(N, C)`` probabilities (logits with ``from_logits``);
    truths ``(N, C)`` target distributions.

    Args:
        normalize: divide the loss and the gradient by N.
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        from_logits: the guesses are logits.
        temperature: ``T`` > 0; the student's softmax is taken of ``z / T``.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import KLDivergence
        >>> loss_calc = KLDivergence()
        >>> guesses = numpy.asarray([[0.5, 0.5]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0]], dtype="f")
        >>> round(loss_calc.get_loss(guesses, truths), 5)  # log 2
        0.69315

    Config::

        [loss]
        @losses = "KLDivergence.v1"
        from_logits = true
        temperature = 2.0

    References: Hinton, Vinyals, Dean. Distilling the Knowledge in a Neural
    Network. 2015. https://arxiv.org/abs/1503.02531
    """

    name = "KLDivergence"
    elementwise = True  # PyTorch's kl_div "mean" divides by N x C
    accepts_ragged = False

    def __init__(self, *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", from_logits: bool = False, temperature: float = 1.0):
        self.temperature = check_float(
            self.name, "temperature", temperature, low=0.0, high=math.inf, low_open=True, high_open=True
        )
        self._init_common(normalize=normalize, weight=weight, reduction=reduction, from_logits=from_logits, labels=LabelScheme(self.name))

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        batch = self._batch(guesses)
        target, _ = dense_target(self.name, batch, truths, self.labels, 0.0)
        weights = self._weights(batch, sample_weight)
        span = batch.run()
        xp, work = batch.xp, batch.work
        del batch  # and with it the checks' diagnostics (row sums of N): peak memory
        grad, losses = kl_divergence(
            xp,
            work,
            target,
            from_logits=self.from_logits,
            temperature=self.temperature,
            span=span if self.from_logits else None,
            weights=weights,
            divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtype(grad, guesses), losses
