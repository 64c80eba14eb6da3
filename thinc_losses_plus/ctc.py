"""Connectionist temporal classification (CTC): a loss for unaligned label sequences.

The calculator validates and converts the inputs (guesses through
:mod:`thinc_losses_plus._inputs`, labels through :mod:`thinc_losses_plus.labels`);
the maths (alignment tables, the forward-backward recursion in log space) is
:func:`thinc_losses_plus.functional.ctc.ctc_loss`.
"""
import math
from typing import List, Optional, Sequence

import numpy
from thinc.types import Padded, Ragged

from ._checks import call_error, check_bool, check_int
from ._core import Evaluation, LossCalculator
from ._inputs import (
    Checks,
    array_module,
    as_compute_dtype,
    is_array,
    prepare_sample_weight,
    restore_dtype,
    sequence_list,
    unpack_sequences,
)
from .functional.ctc import LOGIT_SPAN_LIMIT, ctc_loss, ctc_min_steps
from .functional.softmax import check_distributions
from .labels import LabelScheme

PROBABILITIES_HINT = " (they must be probabilities; use from_logits=True for logits)"


class CTC(LossCalculator):
    """Connectionist temporal classification loss (Graves et al., 2006).

    For each of ``N`` sequences, with per-step class probabilities ``y_t`` (one
    class is the ``blank``) and a label sequence ``l`` (no blanks)::

        loss_i = -log p(l_i | x_i) = -log sum_{paths a collapsing to l_i} prod_t y_t(a_t)

    where a path of length ``T_i`` collapses to ``l_i`` by merging repeats and
    dropping blanks. The reported loss is ``sum_i w_i * loss_i / max(L_i, 1) / N``
    when ``normalize`` (PyTorch's ``reduction="mean"``), else ``sum_i w_i * loss_i``
    (``reduction="sum"``); ``w_i`` is the sample weight (default 1).

    Shapes: guesses a list of ``N`` arrays ``(T_i, C)``: softmax probabilities
    (or logits with ``from_logits=True``), or the same sequences as a
    ``Ragged``, a ``Padded`` (Thinc's time-major batch) or a tuple
    ``(array, lengths)`` of a batch-major ``(N, T, C)`` padded array and the
    sequence lengths; the gradient comes back in that container (zeros on
    padding). Truths: a list of ``N`` label sequences of ``L_i`` labels,
    which may end in ``-1`` padding (Gluon), or an ``(N, L)`` int array padded
    with ``-1``; a sequence is an int array, a list of ints, or a list of strings
    (``str`` or any subclass, such as ``numpy.str_``) mapped to columns
    through ``names``. The sequences share one array type, float dtype
    (float16 is computed in float32) and width ``C``; any memory layout is
    accepted. ``sample_weight``: one weight per sequence, ``(N,)`` or
    ``(N, 1)``, multiplying its loss and gradient.
    ``get_loss_per_example`` returns the ``(N,)`` weighted, unnormalised ``loss_i``.

    Gradient: a list of ``(T_i, C)`` arrays, with respect to the **logits**
    whether the guesses are probabilities (``guesses = softmax(z)``, as the
    softmax family and Thinc's ``Softmax`` layer) or logits:
    ``grad_i[t, c] = scale_i * (y_t(c) - gamma_t(c))`` with ``scale_i = w_i /
    (max(L_i, 1) N)`` when ``normalize``, else ``w_i``. ``gamma_t(c)`` is the
    posterior probability that the path emits class ``c`` at step ``t``, from
    the forward-backward recursion in log space (exact for logits of ``|x| =
    1e4``, finite for float32 logits of ``1e20``; logits whose range times
    ``T_i`` exceeds ``1e27`` are refused with a ValueError). Probabilities
    are clamped at the smallest normal float before the log, so exact zeros
    give a large finite loss, never NaN.

    A sequence whose labels cannot be emitted in ``T_i`` steps (``T_i < L_i +``
    the number of adjacent repeated labels, each needing a blank between) has
    ``loss_i = inf``. With ``zero_infinity=False`` (the default) that raises a
    ValueError naming the sequence (PyTorch would return inf and a NaN
    gradient); with ``zero_infinity=True`` its loss and gradient are 0.

    Args:
        normalize: divide each loss by its label length, then average over the
            sequences (PyTorch's "mean"); False sums the losses ("sum").
        weight: a scalar factor on the loss and the gradient (Gluon's ``weight``), >= 0.
        reduction: what ``normalize`` divides by: "examples" (N), "elements"
            (the N x C terms of an elementwise loss) or "weights" (the labels' weights).
        blank: column of the blank class.
        zero_infinity: give impossible alignments loss 0 and gradient 0
            instead of raising.
        names: column names, to give label sequences as strings.
        from_logits: the guesses are logits; log-softmax is applied inside.

    Example:
        >>> import numpy
        >>> from thinc_losses_plus import CTC
        >>> loss_calc = CTC(names=["-", "a", "b"], normalize=False)
        >>> y = numpy.asarray([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], dtype="f")
        >>> grads, loss = loss_calc([y], [["a"]])
        >>> round(loss, 4)  # paths "a-", "-a", "aa" have probability 1/4 each: -log(3/4)
        0.2877
        >>> grads[0].astype("float64").round(4).tolist()  # y - gamma: "a" is emitted at t with probability 2/3
        [[0.1667, -0.1667, 0.0], [0.1667, -0.1667, 0.0]]

    Config::

        [loss]
        @losses = "CTC.v1"
        blank = 0
        zero_infinity = true
        from_logits = true

    References:
        Graves, Fernandez, Gomez, Schmidhuber (2006), "Connectionist Temporal
        Classification: Labelling Unsegmented Sequence Data with Recurrent
        Neural Networks", ICML. https://www.cs.toronto.edu/~graves/icml_2006.pdf
        PyTorch ``torch.nn.CTCLoss``: https://pytorch.org/docs/stable/generated/torch.nn.CTCLoss.html
    """

    reductions = ("examples",)  # normalize is PyTorch's "mean" already (per label length)

    name = "CTC"
    softmax_family = True

    def __init__(
        self,
        *,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: str = "examples",
        blank: int = 0,
        zero_infinity: bool = False,
        names: Optional[Sequence[str]] = None,
        from_logits: bool = False,
    ):
        super().__init__(normalize=normalize, weight=weight, reduction=reduction)
        self.blank = check_int(self.name, "blank", blank, low=0)
        self.zero_infinity = check_bool(self.name, "zero_infinity", zero_infinity)
        self.labels = LabelScheme(self.name, names=names)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)

    @property
    def names(self) -> Optional[List[str]]:
        """The column names (None: labels are given as ints)."""
        return self.labels.names

    def evaluate(self, guesses, truths, *, sample_weight=None, want_grad: bool = True) -> Evaluation:
        """Gradients, per-sequence losses and divisors: ``max(L_i, 1) * N`` when ``normalize``, else 1."""
        guesses, pack = self._guesses(guesses)
        n_seq = len(guesses)
        if is_array(truths) and truths.ndim == 2:  # (N, L) labels padded with -1 (Gluon)
            truths = list(truths.get() if hasattr(truths, "get") else truths)
        if not isinstance(truths, (list, tuple)):
            kind = type(truths).__name__
            raise call_error(self.name, "truths", f"must be a list of label sequences, one per sequence, got {kind}", TypeError)
        if len(truths) != n_seq:
            raise call_error(self.name, "truths", f"has {len(truths)} label sequences but the guesses have {n_seq} sequences")
        if n_seq == 0:
            prepare_sample_weight(self.name, sample_weight, (0, 1), numpy, "float64")
            return Evaluation(pack([]) if want_grad else None, numpy.zeros((0,)), 1)
        first = guesses[0]
        xp = array_module(first)
        n_classes = int(first.shape[1])
        if self.blank >= n_classes:
            raise call_error(self.name, "blank", f"is {self.blank} but the guesses have only {n_classes} columns (classes)")
        self.labels.check_n_classes(n_classes)
        labels = self._label_sequences(truths, n_classes)
        n_steps = [int(g.shape[0]) for g in guesses]
        feasible = self._feasible(labels, n_steps)
        # A fresh C-contiguous concatenation, whatever the layout of each sequence: ours to overwrite.
        batch = as_compute_dtype(xp.concatenate(guesses))
        checks = Checks(self.name, xp)
        if self.from_logits and batch.size:
            # The logits' range, finite exactly when every logit is (the maths uses it too).
            checks.request(batch.min())
            checks.request(batch.max())
        elif not self.from_logits:
            check_distributions(checks, "guesses", batch, hint=PROBABILITIES_HINT, dtype=first.dtype)
        weights = prepare_sample_weight(self.name, sample_weight, (n_seq, 1), xp, batch.dtype, checks)
        values = checks.run()  # the one transfer of the call
        logit_range = None
        if values:
            logit_range = (values[0], values[1])
            self._check_logit_span(values[1] - values[0], max(n_steps))
        label_lengths = numpy.asarray([x.shape[0] for x in labels], dtype="float64")
        # normalize: PyTorch's "mean", each loss divided by its label length, then by N.
        divisor = numpy.maximum(label_lengths, 1.0) * float(n_seq) if self.normalize else None
        scale = None
        if want_grad:
            if divisor is not None:
                scale = xp.asarray(1.0 / divisor, dtype=batch.dtype)
            if weights is not None:
                scale = weights[:, 0] if scale is None else scale * weights[:, 0]
        grad, losses = ctc_loss(
            xp, batch, labels, n_steps, blank=self.blank, from_logits=self.from_logits,
            scale=scale, want_grad=want_grad, overwrite=True, logit_range=logit_range,
        )
        if not feasible.all():  # zero_infinity: impossible alignments count 0
            losses = xp.where(xp.asarray(feasible), losses, 0.0).astype(batch.dtype, copy=False)
        if weights is not None:
            losses = losses * weights[:, 0]
        grads = None
        if grad is not None:
            grad = restore_dtype(grad, first)
            grads = pack(xp.split(grad, numpy.cumsum(n_steps)[:-1].tolist()))
        return Evaluation(grads, losses, 1 if divisor is None else xp.asarray(divisor))

    # Inputs ------------------------------------------------------------------

    def _guesses(self, guesses):
        """The sequences, from any Thinc container, and the function packing gradients into it."""
        if not isinstance(guesses, (list, Ragged, Padded, tuple)):
            kind = type(guesses).__name__
            raise call_error(
                self.name, "guesses", f"must be a list of (T, C) arrays, a Ragged, a Padded or (array, lengths), got {kind}",
                TypeError,
            )
        sequences, pack = unpack_sequences(self.name, guesses)
        if isinstance(guesses, tuple) and pack is list:
            raise call_error(self.name, "guesses", "as a tuple must be (padded (N, T, C) array, lengths)", TypeError)
        return sequence_list(self.name, sequences), pack

    def _label_sequences(self, truths, n_classes: int) -> List[numpy.ndarray]:
        """Each label sequence as a host int64 array, validated (range, blank)."""
        labels = [self.labels.sequence_indices(i, seq, n_classes) for i, seq in enumerate(truths)]
        flat = numpy.concatenate(labels) if labels else numpy.zeros((0,), dtype="int64")
        if (flat == -1).any():  # one test for the whole batch; strip only when some sequence is padded
            labels = [self._strip_padding(i, x) for i, x in enumerate(labels)]
            flat = numpy.concatenate(labels)
        bad = (flat < 0) | (flat >= n_classes) | (flat == self.blank)
        if bad.any():
            k = int(numpy.argmax(bad))
            i = int(numpy.searchsorted(numpy.cumsum([len(x) for x in labels]), k, side="right"))
            value = int(flat[k])
            if value == self.blank:
                problem = f"sequence {i} contains the blank class {value} (blank={self.blank}); labels must not be blank"
            else:
                problem = f"sequence {i} contains label {value}, outside [0, {n_classes}) for {n_classes} classes"
            raise call_error(self.name, "truths", problem)
        return labels

    def _strip_padding(self, i: int, labels: numpy.ndarray) -> numpy.ndarray:
        """Drop trailing -1 entries: label sequences may come padded with -1 (Gluon)."""
        padding = labels == -1
        if not padding.any():
            return labels
        end = int(numpy.argmax(padding))
        if not padding[end:].all():
            raise call_error(
                self.name, "truths", f"sequence {i} has -1 (padding) before a label; -1 may only pad the end of a sequence"
            )
        return labels[:end]

    def _check_logit_span(self, span: float, n_steps: int) -> None:
        if not math.isfinite(span):
            raise call_error(self.name, "guesses", "contains NaN or infinite values")
        if span * n_steps > LOGIT_SPAN_LIMIT:
            raise call_error(
                self.name,
                "guesses",
                f"are logits spanning {span:.3g} over {n_steps} steps, too wide for log-space CTC "
                f"(at most {LOGIT_SPAN_LIMIT:.0e} / T); scale them down",
            )

    def _feasible(self, labels: List[numpy.ndarray], n_steps: List[int]) -> numpy.ndarray:
        """Which sequences some path can emit; an impossible one raises unless ``zero_infinity``."""
        needed = ctc_min_steps(labels)
        feasible = numpy.asarray(n_steps, dtype="int64") >= needed
        if not feasible.all() and not self.zero_infinity:
            i = int(numpy.argmin(feasible))
            n_labels = int(labels[i].shape[0])
            raise call_error(
                self.name,
                "truths",
                f"sequence {i} has {n_labels} labels ({int(needed[i]) - n_labels} repeated next to each other, each "
                f"needing a blank between) so it needs at least {int(needed[i])} time steps, but its guesses have "
                f"{n_steps[i]}; its loss is infinite (pass zero_infinity=True to give such sequences loss 0)",
            )
        return feasible
