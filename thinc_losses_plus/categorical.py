"""The categorical (softmax) family: Thinc's cross-entropy, done right, at v4.

Thinc's released ``CategoricalCrossentropy.v1-v3`` return ``sum(grad**2)`` as
their "loss". The v4 design its maintainers drafted (and reverted before
release) reports the true cross-entropy with the same gradient; this module
ships it, split into a dense and a sparse calculator, and adds
``from_logits``, ``class_weights``, focal loss and KL divergence.

Gradient convention of the whole family: with respect to the **logits**.
Given probabilities (``from_logits=False``) the guesses are taken to be
``softmax(logits)`` and the gradient is ``p - target`` (scaled, weighted,
masked), which is what Thinc's ``Softmax`` layer expects: its backward pass
skips the softmax Jacobian. With ``from_logits=True`` the guesses are the
logits and the softmax is computed stably inside.
"""
import copy
from numbers import Real
from typing import Dict, List, Optional, Sequence, Union

from thinc.backends import get_array_ops

from ._base import LossCalculator, as_compute_dtype, restore_dtype
from ._checks import (
    call_error,
    check_bool,
    check_finite,
    check_float,
    float_array,
    is_array,
    prepare_sample_weight,
    setting_error,
)
from .labels import LabelScheme, check_missing_value, check_names
from .softmax import (
    distribution_problem,
    kl_divergence,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
    softmax_focal_cross_entropy,
)

ClassWeights = Optional[Union[Dict[str, float], Sequence[float]]]


def check_class_weights(name: str, class_weights: ClassWeights):
    """Validate ``class_weights``: a dict name -> weight, or a list indexed by class."""
    if class_weights is None:
        return None
    if isinstance(class_weights, dict):
        items = list(class_weights.items())
        if not all(isinstance(k, str) for k, _ in items):
            raise setting_error(name, "class_weights", "as a dict must map label names (str) to weights", TypeError)
        values = [v for _, v in items]
    elif is_array(class_weights) or isinstance(class_weights, (list, tuple)):
        values = list(class_weights.tolist() if is_array(class_weights) else class_weights)
    else:
        raise setting_error(
            name, "class_weights", f"must be a dict or a list of numbers, got {type(class_weights).__name__}", TypeError
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, Real):
            raise setting_error(name, "class_weights", f"must hold numbers, got {v!r}", TypeError)
        if not (0 <= v < float("inf")):
            raise setting_error(name, "class_weights", f"must be finite and non-negative, got {v!r}")
    return dict(class_weights) if isinstance(class_weights, dict) else [float(v) for v in values]


class _Categorical(LossCalculator):
    """Settings and conversions shared by the softmax-family calculators."""

    accepts_ragged = True

    def _init_common(self, *, normalize, from_logits, class_weights, names=None):
        LossCalculator.__init__(self, normalize=normalize)
        self.from_logits = check_bool(self.name, "from_logits", from_logits)
        self.class_weights = check_class_weights(self.name, class_weights)
        self._check_weight_names(names)

    def _check_weight_names(self, names):
        if isinstance(self.class_weights, dict):
            if not names:
                raise setting_error(self.name, "class_weights", "is a dict, which needs 'names' to map it to columns")
            unknown = sorted(set(self.class_weights) - set(names))
            if unknown:
                raise setting_error(self.name, "class_weights", f"names unknown labels: {unknown}")

    def with_names(self, names: Sequence[str]) -> "_Categorical":
        """A copy of this calculator with ``names`` set (for spaCy components).

        Raises ValueError if other names were configured already.
        """
        names = check_names(self.name, names)
        if self.names is not None and self.names != names:
            raise setting_error(self.name, "names", f"were configured as {self.names}, not the component's {names}")
        clone = copy.copy(self)
        clone._set_names(names)
        clone._check_weight_names(names)
        return clone

    def _set_names(self, names):
        self.names = names

    # Call-time helpers ------------------------------------------------------

    def _guesses(self, guesses):
        """Validate the guesses; return them in the compute dtype and their xp."""
        float_array(self.name, "guesses", guesses, ndim=2)
        xp = get_array_ops(guesses).xp
        if self.from_logits:
            check_finite(self.name, "guesses", guesses)
        else:
            problem = distribution_problem(xp, guesses)
            if problem:
                raise call_error(self.name, "guesses", f"{problem} (they must be probabilities; use from_logits=True for logits)")
        if self.names is not None and len(self.names) != guesses.shape[1]:
            raise call_error(
                self.name, "names", f"has {len(self.names)} entries but the guesses have {guesses.shape[1]} columns"
            )
        return as_compute_dtype(guesses), xp

    def _weights(self, xp, guesses, sample_weight, scale: float = 1.0):
        """Class weights times sample weights, broadcastable to the guesses (or None)."""
        n, c = guesses.shape
        weights = prepare_sample_weight(self.name, sample_weight, (n, c), xp, guesses.dtype)
        if self.class_weights is not None:
            if isinstance(self.class_weights, dict):
                per_class = [float(self.class_weights.get(name, 1.0)) for name in self.names]
            else:
                per_class = self.class_weights
                if len(per_class) != c:
                    raise call_error(
                        self.name, "class_weights", f"has {len(per_class)} entries but the guesses have {c} columns"
                    )
            class_w = xp.asarray(per_class, dtype=guesses.dtype).reshape(1, c)
            weights = class_w if weights is None else weights * class_w
        if scale != 1.0:
            weights = xp.full((1, c), scale, dtype=guesses.dtype) if weights is None else weights * scale
        return weights


def check_label_smoothing(name: str, value) -> float:
    """0 <= e; the upper bound (C-1)/C depends on C and is checked at call time."""
    return check_float(name, "label_smoothing", value, low=0.0, high=1.0, high_open=True)


def check_smoothing_for(name: str, label_smoothing: float, n_classes: int) -> None:
    if label_smoothing and label_smoothing >= (n_classes - 1) / n_classes:
        raise call_error(
            name,
            "label_smoothing",
            f"must be < (C-1)/C = {(n_classes - 1) / n_classes:g} for C = {n_classes} classes, got {label_smoothing:g}",
        )


class SparseCategoricalCrossentropy(_Categorical):
    """Cross-entropy of softmax outputs against class labels (ints or names).

    For each row ``i`` with label ``y`` and target ``t`` (``1 - e`` on ``y``,
    ``e / (C - 1)`` elsewhere; ``e = label_smoothing``)::

        loss = -sum_i sum_c w_c * t_ic * log(p_ic + 1e-9) / n
        grad =  (p_i - t_i) / n                       (w = 1)
        grad =  (p_i * sum_c w_c t_ic - w * t_i) / n  (class/sample weights)

    ``n`` is the number of rows (of sequences for ``Ragged`` guesses) when
    ``normalize``, else 1; rows with a missing label count in ``n``. The
    gradient is with respect to the logits (see the module docstring);
    with ``from_logits=True`` ``log p`` is the exact log-softmax of the guesses.

    Truths: an int array, a list of ints, or a list of strings mapped through
    ``names``. A label equal to ``missing_value`` (or ``None`` when
    ``missing_value`` is None) masks its row. With ``neg_prefix="!"`` the label
    ``"!NOUN"`` means "not NOUN": its row is masked except the NOUN column,
    whose target is 0 (gradient ``p_NOUN``; the row adds 0 to the loss).
    ``class_weights`` (a list indexed by class, or a dict name -> weight with
    1.0 for absent names) give PyTorch's weighted cross-entropy.

    Example:
        >>> import numpy
        >>> loss_calc = SparseCategoricalCrossentropy(names=["NOUN", "VERB"])
        >>> guesses = numpy.asarray([[0.9, 0.1], [0.2, 0.8]], dtype="f")
        >>> grad, loss = loss_calc(guesses, ["NOUN", "VERB"])
        >>> round(loss, 4)  # -(log 0.9 + log 0.8) / 2
        0.1643
        >>> grad.astype("float64").round(4).tolist()  # (p - onehot) / 2
        [[-0.05, 0.05], [0.1, -0.1]]

    Config::

        [loss]
        @losses = "SparseCategoricalCrossentropy.v4"
        names = ["NOUN", "VERB"]
        label_smoothing = 0.1
    """

    name = "SparseCategoricalCrossentropy"

    def __init__(
        self,
        *,
        normalize: bool = True,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
        neg_prefix: Optional[str] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        class_weights: ClassWeights = None,
    ):
        self._labels = LabelScheme(self.name, names=names, missing_value=missing_value, neg_prefix=neg_prefix)
        self.names = self._labels.names
        self.missing_value = missing_value
        self.neg_prefix = neg_prefix
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing)
        self._init_common(normalize=normalize, from_logits=from_logits, class_weights=class_weights, names=self.names)

    def _set_names(self, names):
        self._labels = LabelScheme(self.name, names=names, missing_value=self.missing_value, neg_prefix=self.neg_prefix)
        self.names = self._labels.names

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        work, xp = self._guesses(guesses)
        n, c = work.shape
        check_smoothing_for(self.name, self.label_smoothing, c)
        labels = self._labels.to_indices(truths, n, c, xp)
        grad, losses = softmax_cross_entropy_with_integer_labels(
            xp,
            work,
            labels.indices,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
            weights=self._weights(xp, work, sample_weight),
            missing=labels.missing,
            negative=labels.negative,
            divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtype(grad, guesses), losses


class CategoricalCrossentropy(_Categorical):
    """Cross-entropy of softmax outputs against dense target distributions.

    Each row of the truths is a distribution over the C classes (one-hot or
    soft). With ``t`` the (smoothed) target row and ``w`` the weights::

        loss = -sum_i sum_c w_c * t_ic * log(p_ic + 1e-9) / n
        grad =  (p_i - t_i) / n                       (w = 1)
        grad =  (p_i * sum_c w_c t_ic - w * t_i) / n  (class/sample weights)

    The gradient is with respect to the logits (see the module docstring).
    ``missing_value`` (an int) masks the rows whose argmax equals it.
    ``label_smoothing`` ``e`` applies to one-hot rows only: ``1 - e`` on the
    hot column, ``e / (C - 1)`` elsewhere. ``names`` are optional: they let
    ``class_weights`` be a dict and check the number of columns.

    Example:
        >>> import numpy
        >>> loss_calc = CategoricalCrossentropy()
        >>> guesses = numpy.asarray([[0.5, 0.5], [0.25, 0.75]], dtype="f")
        >>> truths = numpy.asarray([[1.0, 0.0], [0.0, 1.0]], dtype="f")
        >>> grad, loss = loss_calc(guesses, truths)
        >>> round(loss, 4)  # -(log 0.5 + log 0.75) / 2
        0.4904
        >>> grad.tolist()
        [[-0.25, 0.25], [0.125, -0.125]]

    Config::

        [loss]
        @losses = "CategoricalCrossentropy.v4"
        missing_value = -1
        from_logits = false
    """

    name = "CategoricalCrossentropy"

    def __init__(
        self,
        *,
        normalize: bool = True,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[int] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        class_weights: ClassWeights = None,
    ):
        self.names = check_names(self.name, names)
        self.missing_value = check_missing_value(self.name, missing_value, allow_str=False)
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing)
        self._init_common(normalize=normalize, from_logits=from_logits, class_weights=class_weights, names=self.names)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        work, xp = self._guesses(guesses)
        target, missing = dense_target(self.name, xp, truths, work, self.missing_value, self.label_smoothing)
        grad, losses = softmax_cross_entropy(
            xp,
            work,
            target,
            from_logits=self.from_logits,
            weights=self._weights(xp, work, sample_weight),
            missing=missing,
            divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtype(grad, guesses), losses


def dense_target(name: str, xp, truths, guesses, missing_value, label_smoothing):
    """Validate dense truths; return the (smoothed) target and the missing rows."""
    if not is_array(truths) or truths.dtype.kind != "f":
        kind = truths.dtype if is_array(truths) else type(truths).__name__
        raise call_error(
            name, "truths", f"must be a float array of target distributions, got {kind} "
            "(for class labels use SparseCategoricalCrossentropy)", TypeError
        )
    if tuple(truths.shape) != tuple(guesses.shape):
        raise call_error(name, "truths", f"must have the guesses' shape {tuple(guesses.shape)}, got {tuple(truths.shape)}")
    truths = xp.asarray(truths)
    missing = None
    checked = truths
    if missing_value is not None and truths.size:
        missing = xp.argmax(truths, axis=1) == missing_value
        if bool(missing.any()):
            checked = truths[~missing]
        else:
            missing = None
    problem = distribution_problem(xp, checked)
    if problem:
        raise call_error(name, "truths", problem)
    target = truths.astype(guesses.dtype, copy=False)
    if label_smoothing:
        n_classes = guesses.shape[1]
        check_smoothing_for(name, label_smoothing, n_classes)
        if checked.size and not bool(((checked == 0) | (checked == 1)).all()):
            raise call_error(name, "label_smoothing", "applies to one-hot truth rows only; some rows are soft")
        off = label_smoothing / (n_classes - 1)
        target = target * (1.0 - label_smoothing - off) + off
    return target, missing


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

    Example:
        >>> import numpy
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

    def __init__(
        self,
        *,
        normalize: bool = True,
        gamma: float = 2.0,
        alpha: float = 1.0,
        class_weights: ClassWeights = None,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
        neg_prefix: Optional[str] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
    ):
        self._labels = LabelScheme(self.name, names=names, missing_value=missing_value, neg_prefix=neg_prefix)
        self.names = self._labels.names
        self.missing_value = missing_value
        self.neg_prefix = neg_prefix
        self.gamma = check_float(self.name, "gamma", gamma, low=0.0, high=float("inf"), high_open=True)
        self.alpha = check_float(self.name, "alpha", alpha, low=0.0, high=float("inf"), low_open=True, high_open=True)
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing)
        self._init_common(normalize=normalize, from_logits=from_logits, class_weights=class_weights, names=self.names)

    _set_names = SparseCategoricalCrossentropy._set_names

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        work, xp = self._guesses(guesses)
        n, c = work.shape
        negative = indices = None
        if is_array(truths) and truths.dtype.kind == "f":
            # Dense target rows: only an int missing_value (an argmax) applies.
            missing_value = self.missing_value if isinstance(self.missing_value, int) else None
            target, missing = dense_target(self.name, xp, truths, work, missing_value, self.label_smoothing)
        else:
            check_smoothing_for(self.name, self.label_smoothing, c)
            labels = self._labels.to_indices(truths, n, c, xp)
            indices, missing, negative = labels
            off = self.label_smoothing / (c - 1) if self.label_smoothing else 0.0
            target = xp.full((n, c), off, dtype=work.dtype)
            target[xp.arange(n), indices] = 1.0 - self.label_smoothing
            if negative is not None:
                target[negative] = 0
        grad, losses = softmax_focal_cross_entropy(
            xp,
            work,
            target,
            gamma=self.gamma,
            from_logits=self.from_logits,
            weights=self._weights(xp, work, sample_weight, scale=self.alpha),
            missing=missing,
            negative=negative,
            labels=indices,
            divisor=divisor,
            want_grad=want_grad,
        )
        return restore_dtype(grad, guesses), losses


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


class SequenceCategoricalCrossentropy(LossCalculator):
    """Cross-entropy over a batch of sequences (Thinc's sequence loss at v4).

    Guesses are a list of (T_i, C) arrays, truths a list of the same length:
    label sequences (``sparse=True``: int arrays, lists of ints or names) or
    (T_i, C) target distributions (``sparse=False``). Each sequence is scored
    by :class:`SparseCategoricalCrossentropy` or
    :class:`CategoricalCrossentropy` without normalisation; then::

        grads = [grad_i / n for each sequence]   (n = number of sequences if normalize, else 1)
        loss  = sum_i loss_i                     (the unnormalised sum, as Thinc's design)

    The gradient is with respect to the logits (see the module docstring).
    ``[]`` gives ``([], 0.0)``. ``get_loss_per_example`` returns one (T_i,)
    array of row losses per sequence. ``sample_weight`` is None or a list with
    one weight array per sequence.

    Example:
        >>> import numpy
        >>> loss_calc = SequenceCategoricalCrossentropy(names=["A", "B"])
        >>> guesses = [numpy.asarray([[0.5, 0.5]], dtype="f"), numpy.asarray([[0.25, 0.75]], dtype="f")]
        >>> grads, loss = loss_calc(guesses, [["A"], ["B"]])
        >>> round(loss, 4)  # -(log 0.5 + log 0.75)
        0.9808
        >>> [g.tolist() for g in grads]
        [[[-0.25, 0.25]], [[0.125, -0.125]]]

    Config::

        [loss]
        @losses = "SequenceCategoricalCrossentropy.v4"
        normalize = false
        neg_prefix = "!"
    """

    name = "SequenceCategoricalCrossentropy"

    def __init__(
        self,
        *,
        normalize: bool = True,
        sparse: bool = True,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Union[int, str]] = None,
        neg_prefix: Optional[str] = None,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        class_weights: ClassWeights = None,
    ):
        super().__init__(normalize=normalize)
        self.sparse = check_bool(self.name, "sparse", sparse)
        settings = dict(label_smoothing=label_smoothing, from_logits=from_logits, class_weights=class_weights)
        if self.sparse:
            inner = SparseCategoricalCrossentropy(
                normalize=False, names=names, missing_value=missing_value, neg_prefix=neg_prefix, **settings
            )
        else:
            if neg_prefix is not None:
                raise setting_error(self.name, "neg_prefix", "applies to label truths only (sparse=True)")
            if isinstance(missing_value, str):
                raise setting_error(self.name, "missing_value", "must be an int (an argmax) when sparse=False", TypeError)
            inner = CategoricalCrossentropy(normalize=False, names=names, missing_value=missing_value, **settings)
        inner.name = self.name  # errors name the calculator the user configured
        self._inner = inner

    def __getattr__(self, attr):
        # names, missing_value, label_smoothing, ... are the inner calculator's settings
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._inner, attr)

    def with_names(self, names: Sequence[str]) -> "SequenceCategoricalCrossentropy":
        """A copy of this calculator with ``names`` set (for spaCy components)."""
        clone = copy.copy(self)
        clone._inner = self._inner.with_names(names)
        return clone

    def count_examples(self, guesses) -> int:
        return len(guesses)

    def compute(self, guesses, truths, *, sample_weight, divisor, want_grad):
        if not isinstance(guesses, (list, tuple)):
            raise call_error(self.name, "guesses", f"must be a list of 2d arrays, got {type(guesses).__name__}", TypeError)
        if not isinstance(truths, (list, tuple)):
            raise call_error(self.name, "truths", f"must be a list (one entry per sequence), got {type(truths).__name__}", TypeError)
        if len(guesses) != len(truths):
            raise call_error(self.name, "truths", f"has {len(truths)} sequences but the guesses have {len(guesses)}")
        if sample_weight is not None and (not isinstance(sample_weight, (list, tuple)) or len(sample_weight) != len(guesses)):
            raise call_error(self.name, "sample_weight", "must be None or a list with one array per sequence")
        if not guesses:
            return [], []
        for g in guesses:
            float_array(self.name, "guesses", g, ndim=2)
        xp = get_array_ops(guesses[0]).xp
        lengths = [int(g.shape[0]) for g in guesses]
        batch = xp.concatenate(guesses) if len(guesses) > 1 else guesses[0]
        flat_truths = _concatenate_truths(self.name, xp, truths, lengths, self.sparse)
        flat_weight = None
        if sample_weight is not None:
            flat_weight = xp.concatenate(
                [xp.asarray(w, dtype=batch.dtype).reshape(length, -1) for w, length in zip(sample_weight, lengths)]
            )
        grad, losses = self._inner.compute(
            batch, flat_truths, sample_weight=flat_weight, divisor=divisor, want_grad=want_grad
        )
        ends = list(_cumsum(lengths))
        per_sequence = [losses[start:end] for start, end in zip([0] + ends[:-1], ends)]
        grads = None
        if grad is not None:
            grads = [grad[start:end] for start, end in zip([0] + ends[:-1], ends)]
        return grads, per_sequence

    def _reduce(self, result) -> float:
        # The loss is the sum of the per-sequence unnormalised losses.
        return float(sum(float(losses.sum(dtype="float64")) for losses in result.per_example))


def _cumsum(values):
    total = 0
    for v in values:
        total += v
        yield total


def _concatenate_truths(name, xp, truths, lengths, sparse):
    flat = []
    for i, (t, length) in enumerate(zip(truths, lengths)):
        size = t.shape[0] if is_array(t) else len(t) if isinstance(t, (list, tuple)) else None
        if size is None:
            raise call_error(name, "truths", f"sequence {i} must be an array or a list, got {type(t).__name__}", TypeError)
        if size != length:
            raise call_error(name, "truths", f"sequence {i} has {size} entries but its guesses have {length} rows")
    if not sparse or all(is_array(t) for t in truths):
        return xp.concatenate([xp.asarray(t) for t in truths]) if len(truths) > 1 else truths[0]
    for t in truths:
        flat.extend(t.tolist() if is_array(t) else t)
    return flat
