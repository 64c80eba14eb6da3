"""KL divergence of softmax outputs from target distributions (distillation)."""
from ._base import restore_dtype
from ._checks import check_float
from .categorical import _Categorical, dense_target
from .softmax import kl_divergence


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
        from_logits: the guesses are logits.
        temperature: ``T`` > 0; the student's softmax is taken of ``z / T``.

    Example:
        >>> import numpy
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
    accepts_ragged = False

    def __init__(self, *, normalize: bool = True, from_logits: bool = False, temperature: float = 1.0):
        self.temperature = check_float(
            self.name, "temperature", temperature, low=0.0, high=float("inf"), low_open=True, high_open=True
        )
        self.names = None
        self._init_common(normalize=normalize, from_logits=from_logits, class_weights=None)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        work, xp = self._guesses(guesses)
        target, _ = dense_target(self.name, xp, truths, work, None, 0.0)
        grad, losses = kl_divergence(
            xp,
            work,
            target,
            from_logits=self.from_logits,
            temperature=self.temperature,
            weights=self._weights(xp, work, sample_weight),
            divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtype(grad, guesses), losses
