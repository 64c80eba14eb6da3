"""Connectionist temporal classification (CTC): a loss for unaligned label sequences.

The calculator validates and converts the inputs; the maths (alignment
tables, the forward-backward recursion in log space) is in
:mod:`.ctc_maths`.
"""
from numbers import Integral
from typing import List, Optional, Sequence

import numpy
from thinc.backends import get_array_ops

from ._checks import call_error, check_bool, check_int
from ._core import Evaluation, LossCalculator
from ._inputs import as_compute_dtype, check_finite, is_array, prepare_sample_weight
from .ctc_maths import NEG, ctc_forward_backward, ctc_tables, scatter_occupancy
from .labels import check_names
from .functional.softmax import distribution_problem


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
    (or logits with ``from_logits=True``); truths a list of ``N`` label
    sequences of ``L_i`` labels: int arrays, lists of ints, or lists of strings
    mapped to columns through ``names``. ``sample_weight``: one weight per
    sequence, ``(N,)`` or ``(N, 1)``, multiplying its loss and gradient.
    ``get_loss_per_example`` returns the ``(N,)`` weighted, unnormalised ``loss_i``.

    Gradient: a list of ``(T_i, C)`` arrays, with respect to the **logits**
    whether the guesses are probabilities (``guesses = softmax(z)``, as the
    softmax family and Thinc's ``Softmax`` layer) or logits:
    ``grad_i[t, c] = scale_i * (y_t(c) - gamma_t(c))`` with ``scale_i = w_i /
    (max(L_i, 1) N)`` when ``normalize``, else ``w_i``. ``gamma_t(c)`` is the
    posterior probability that the path emits class ``c`` at step ``t``, from
    the forward-backward recursion in log space (finite for logits of ``|x| =
    1e4``). Probabilities are clamped at the smallest normal float before the
    log, so exact zeros give a large finite loss, never NaN.

    A sequence whose labels cannot be emitted in ``T_i`` steps (``T_i < L_i +``
    the number of adjacent repeated labels, each needing a blank between) has
    ``loss_i = inf``. With ``zero_infinity=False`` (the default) that raises a
    ValueError naming the sequence (PyTorch would return inf and a NaN
    gradient); with ``zero_infinity=True`` its loss and gradient are 0.

    Args:
        normalize: divide each loss by its label length, then average over the
            sequences (PyTorch's "mean"); False sums the losses ("sum").
        blank: column of the blank class.
        zero_infinity: give impossible alignments loss 0 and gradient 0
            instead of raising.
        names: column names, to give label sequences as strings.
        from_logits: the guesses are logits; log-softmax is applied inside.

    Example:
        >>> import numpy
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

    name = "CTC"
    softmax_family = True

    def __init__(
        self,
        *,
        normalize: bool = True,
        blank: int = 0,
        zero_infinity: bool = False,
        names: Optional[Sequence[str]] = None,
        from_logits: bool = False,
    ):
        super().__init__(normalize=normalize)
        self.blank = check_int(self.name, "blank", blank, low=0)
        self.zero_infinity = check_bool(self.name, "zero_infinity", zero_infinity)
        self.names = check_names(self.name, names)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self._name_to_i = {n: i for i, n in enumerate(self.names or [])}

    def compute(self, guesses, truths, *, sample_weight, divisor: float, want_grad: bool):
        result = self._run(guesses, truths, sample_weight, want_grad)
        return result.grad, result.per_example

    def _evaluate(self, guesses, truths, sample_weight, *, want_grad: bool) -> Evaluation:
        """As the base, but with normalize the divisor is per sequence: ``max(L_i, 1) * N``."""
        return self._run(guesses, truths, sample_weight, want_grad)

    def _reduce(self, result: Evaluation) -> float:
        if result.per_example.size == 0:
            return 0.0
        return float((result.per_example.astype(numpy.float64) / result.divisor).sum())

    # Inputs ------------------------------------------------------------------

    def _error(self, arg: str, problem: str, cls=ValueError) -> Exception:
        return call_error(self.name, arg, problem, cls)

    def _check_guesses_list(self, guesses) -> int:
        if not isinstance(guesses, list):
            kind = type(guesses).__name__
            raise self._error("guesses", f"must be a list of (T, C) arrays, one per sequence, got {kind}", TypeError)
        return len(guesses)

    def _concatenate(self, guesses):
        """Validate the guesses; return them concatenated (a fresh array, compute dtype) and xp."""
        first = guesses[0]
        for i, g in enumerate(guesses):
            if not is_array(g) or g.dtype.kind != "f":
                what = f"dtype {g.dtype}" if is_array(g) else type(g).__name__
                raise self._error("guesses", f"sequence {i} must be a float array, got {what}", TypeError)
            if g.ndim != 2:
                raise self._error("guesses", f"sequence {i} must be 2-dimensional (T, C), got shape {tuple(g.shape)}")
            if type(g) is not type(first) or g.dtype != first.dtype:
                raise self._error(
                    "guesses",
                    f"sequence {i} is a {type(g).__name__} of {g.dtype}, "
                    f"sequence 0 a {type(first).__name__} of {first.dtype}",
                    TypeError,
                )
            if g.shape[1] != first.shape[1]:
                raise self._error("guesses", f"sequence {i} has {g.shape[1]} columns, sequence 0 has {first.shape[1]}")
        n_classes = int(first.shape[1])
        if self.blank >= n_classes:
            raise self._error("blank", f"is {self.blank} but the guesses have only {n_classes} columns (classes)")
        if self.names is not None and len(self.names) != n_classes:
            raise self._error("names", f"has {len(self.names)} entries but the guesses have {n_classes} columns")
        xp = get_array_ops(first).xp
        cat = as_compute_dtype(xp.concatenate(guesses))
        if self.from_logits:
            check_finite(self.name, "guesses", cat)
        else:
            atol = 1e-5 + n_classes * float(numpy.finfo(first.dtype).eps)  # the rounding of a softmax in that dtype
            problem = distribution_problem(xp, cat, atol=atol)
            if problem:
                raise self._error("guesses", f"{problem} (they must be probabilities; use from_logits=True for logits)")
        return cat, xp

    def _labels(self, truths, n_seq: int, n_classes: int) -> List[numpy.ndarray]:
        """Each label sequence as a host int64 array, validated (range, blank)."""
        if not isinstance(truths, (list, tuple)):
            kind = type(truths).__name__
            raise self._error("truths", f"must be a list of label sequences, one per sequence, got {kind}", TypeError)
        if len(truths) != n_seq:
            raise self._error("truths", f"has {len(truths)} label sequences but the guesses have {n_seq} sequences")
        labels = [self._label_sequence(i, t) for i, t in enumerate(truths)]
        flat = numpy.concatenate(labels) if labels else numpy.zeros((0,), dtype="int64")
        bad = (flat < 0) | (flat >= n_classes) | (flat == self.blank)
        if bad.any():
            k = int(numpy.argmax(bad))
            i = int(numpy.searchsorted(numpy.cumsum([len(x) for x in labels]), k, side="right"))
            value = int(flat[k])
            if value == self.blank:
                problem = f"sequence {i} contains the blank class {value} (blank={self.blank}); labels must not be blank"
            else:
                problem = f"sequence {i} contains label {value}, outside [0, {n_classes}) for {n_classes} classes"
            raise self._error("truths", problem)
        return labels

    def _label_sequence(self, i: int, seq) -> numpy.ndarray:
        if is_array(seq):
            if seq.dtype.kind not in "iu":
                raise self._error("truths", f"sequence {i} must hold integer labels, got dtype {seq.dtype}", TypeError)
            if seq.ndim != 1:
                raise self._error("truths", f"sequence {i} must be 1-dimensional, got shape {tuple(seq.shape)}")
            host = seq.get() if hasattr(seq, "get") else seq  # labels are small: the tables are built on the host
            return numpy.asarray(host, dtype="int64")
        if isinstance(seq, str):
            hint = f"for characters use list({seq[:10]!r})"
            raise self._error("truths", f"sequence {i} is a str, not a list of labels ({hint})", TypeError)
        if not isinstance(seq, (list, tuple)):
            kind = type(seq).__name__
            raise self._error("truths", f"sequence {i} must be an int array or a list of labels, got {kind}", TypeError)
        if not seq:
            return numpy.zeros((0,), dtype="int64")
        kinds = set(map(type, seq))
        if kinds == {str}:
            if self.names is None:
                raise self._error("truths", f"sequence {i} holds strings but no 'names' were given to map them to columns")
            unknown = [label for label in seq if label not in self._name_to_i]
            if unknown:
                raise self._error("truths", f"sequence {i} contains unknown label {unknown[0]!r}")
            return numpy.asarray([self._name_to_i[label] for label in seq], dtype="int64")
        if all(issubclass(k, Integral) and not issubclass(k, (bool, numpy.bool_)) for k in kinds):
            return numpy.asarray(seq, dtype="int64")
        if str in kinds:
            raise self._error("truths", f"sequence {i} mixes strings with other types", TypeError)
        bad = next(k for k in kinds if not issubclass(k, Integral) or issubclass(k, (bool, numpy.bool_)))
        raise self._error("truths", f"sequence {i} must hold int labels or names (str), got {bad.__name__}", TypeError)

    # The computation -----------------------------------------------------------

    def _run(self, guesses, truths, sample_weight, want_grad: bool) -> Evaluation:
        n_seq = self._check_guesses_list(guesses)
        if n_seq == 0:
            self._labels(truths, 0, 0)
            prepare_sample_weight(self.name, sample_weight, (0, 1), numpy, "float64")
            return Evaluation([] if want_grad else None, numpy.zeros((0,)), 1)
        cat, xp = self._concatenate(guesses)
        n_classes = int(cat.shape[1])
        labels = self._labels(truths, n_seq, n_classes)
        n_steps = [int(g.shape[0]) for g in guesses]
        label_lengths = numpy.asarray([x.shape[0] for x in labels], dtype="int64")
        repeats = numpy.asarray([int((x[1:] == x[:-1]).sum()) for x in labels], dtype="int64")
        impossible = numpy.asarray(n_steps) < label_lengths + repeats
        if impossible.any() and not self.zero_infinity:
            i = int(numpy.argmax(impossible))
            raise self._error(
                "truths",
                f"sequence {i} has {label_lengths[i]} labels ({repeats[i]} repeated next to each other, each needing "
                f"a blank between) so it needs at least {label_lengths[i] + repeats[i]} time steps, but its guesses "
                f"have {n_steps[i]}; its loss is infinite (pass zero_infinity=True to give such sequences loss 0)",
            )
        weights = prepare_sample_weight(self.name, sample_weight, (n_seq, 1), xp, cat.dtype)
        dtype = cat.dtype
        log_probs = xp.empty((cat.shape[0], n_classes + 1), dtype=dtype)
        log_probs[:, n_classes] = NEG
        if self.from_logits:
            shifted = cat - cat.max(axis=1, keepdims=True)
            probs = xp.exp(shifted)
            sums = probs.sum(axis=1, keepdims=True)
            probs /= sums
            xp.subtract(shifted, xp.log(sums), out=log_probs[:, :n_classes])
        else:
            probs = cat  # a fresh concatenation: ours to overwrite with the gradient
            xp.log(xp.maximum(cat, numpy.finfo(dtype).tiny), out=log_probs[:, :n_classes])
        tables = ctc_tables(labels, n_steps, n_classes, self.blank)
        log_p, occupancy = ctc_forward_backward(xp, log_probs, tables, want_grad=want_grad)
        inverse = xp.asarray(numpy.argsort(tables.order, kind="stable"))
        # Per sequence (original order): normalize divides by max(L_i, 1) * N; impossible ones count 0.
        divisor = numpy.maximum(label_lengths, 1) * float(n_seq) if self.normalize else numpy.ones((n_seq,))
        keep = (~impossible).astype("float64")
        losses = xp.where(xp.asarray(keep > 0), -log_p[inverse], 0.0).astype(dtype, copy=False)
        if weights is not None:
            losses = losses * weights[:, 0]
        grads = None
        if want_grad:
            log_probs.fill(0.0)  # no longer needed: it receives the occupancy of each row
            grad = probs
            grad -= scatter_occupancy(xp, occupancy, tables, log_probs)[:, :n_classes]
            scale = xp.asarray(keep / divisor, dtype=dtype)
            if weights is not None:
                scale = scale * weights[:, 0]
            grad *= xp.repeat(scale, n_steps)[:, None]
            if grad.dtype != guesses[0].dtype:
                grad = grad.astype(guesses[0].dtype)
            grads = xp.split(grad, numpy.cumsum(n_steps)[:-1].tolist())
        return Evaluation(grads, losses, xp.asarray(divisor) if self.normalize else 1)
