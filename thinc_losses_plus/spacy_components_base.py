"""What the ``*_with_loss`` spaCy components share (see :mod:`.spacy_components`).

A component binds its labels to the configured loss (``names``), checks the
loss against the model's output layer, builds the truths in the form the loss
takes (per-sequence label lists, a flat label list, or dense rows with sample
weights for missing values), calls the loss, and converts its gradient for
the output layer (:mod:`.output_layers`). A ``WeightedSum`` loss is split
into its parts, each called and converted on its own, so that parts with
different gradient conventions can be mixed.
"""

import inspect
from typing import List, Optional

from spacy.training import validate_examples
from thinc import loss as thinc_loss
from thinc.loss import Loss

from . import LossCalculator, SequenceCategoricalCrossentropy, SparseCategoricalCrossentropy, WeightedSum
from .output_layers import adapt_gradient, gradient_target, is_softmax_family, output_kind, pairing_problem

SEQUENCE, LABELS, DENSE = "sequence", "labels", "dense"


def truth_format(loss) -> str:
    """How a loss takes its truths: per-sequence label lists, a flat label list, or dense rows."""
    if isinstance(loss, (SequenceCategoricalCrossentropy, thinc_loss.SequenceCategoricalCrossentropy)):
        return SEQUENCE
    if isinstance(loss, (SparseCategoricalCrossentropy, thinc_loss.CategoricalCrossentropy)):
        return LABELS
    return DENSE


def loss_label(loss) -> str:
    return getattr(loss, "name", None) or type(loss).__name__


def bind_names(loss, labels: List[str]):
    """A copy of ``loss`` that knows the component's labels (or ``loss`` itself if it has no names).

    This package's calculators have ``with_names``; Thinc's own categorical
    losses are rebuilt through their constructor with the same settings.
    """
    if hasattr(loss, "with_names"):
        return loss.with_names(list(labels))
    if isinstance(loss, (thinc_loss.SequenceCategoricalCrossentropy, thinc_loss.CategoricalCrossentropy)):
        names = _setting(loss, "names")
        if names and list(names) != list(labels):
            raise ValueError(f"its names {list(names)} differ from the component's labels {list(labels)}")
        settings = {arg: _setting(loss, arg) for arg in ("normalize", "missing_value", "neg_prefix", "label_smoothing")}
        return type(loss)(names=list(labels), **settings)
    return loss


def forward_settings(loss, component: str, settings: dict):
    """Pass component settings (name -> (value, component default)) on to the loss.

    A loss that leaves a setting at its own default takes the component's
    value (spaCy's tagger passes ``neg_prefix = "!"`` to its loss this way).
    A loss that sets it wins over a component left at its default; both set
    to different values is refused. A component setting away from its
    default needs a loss that has that setting.
    """
    params = inspect.signature(type(loss).__init__).parameters
    overrides = {}
    for arg, (value, default) in settings.items():
        if arg not in params or _setting(loss, arg) is _ABSENT:
            if value != default:
                raise ValueError(
                    f"Cannot create '{component}': '{arg} = {value!r}' is set on the component, but the "
                    f"loss {loss_label(loss)} has no '{arg}' setting; leave it at {default!r}"
                )
            continue
        current = _setting(loss, arg)
        if current == params[arg].default:
            if value != current:
                overrides[arg] = value
        elif value != default and value != current:
            raise ValueError(
                f"Cannot create '{component}': '{arg}' is {value!r} on the component but {current!r} "
                f"in its loss block; set it in one place"
            )
    if not overrides:
        return loss
    kwargs = {p: _setting(loss, p) for p in params if p != "self" and _setting(loss, p) is not _ABSENT}
    kwargs.update(overrides)
    return type(loss)(**kwargs)


_ABSENT = object()


def _setting(loss, arg: str):
    """A loss's setting (Thinc's sequence loss keeps its settings on ``.cc``)."""
    if hasattr(loss, arg):
        return getattr(loss, arg)
    return getattr(getattr(loss, "cc", None), arg, _ABSENT)


def call_loss(loss, guesses, truths, weight, component: str):
    """``loss(guesses, truths)``, with ``sample_weight`` when there is one."""
    if isinstance(loss, LossCalculator):
        return loss(guesses, truths, sample_weight=weight)
    if weight is not None:
        raise ValueError(
            f"Cannot calculate the loss of '{component}': its annotation has missing values, which need "
            f"sample weights, and {loss_label(loss)} takes none; use a loss of thinc-losses-plus"
        )
    return loss(guesses, truths)


def loss_parts(loss, factor: float = 1.0, n_normalize: int = 0):
    """``[(weight, n_normalize, loss)]``: the leaves of (nested) ``WeightedSum`` losses.

    A component calls each leaf itself so that each gradient is handed to the
    output layer in the leaf's own convention; ``n_normalize`` counts the
    enclosing sums with ``normalize = true`` (each divides by N once more).
    """
    if not isinstance(loss, WeightedSum):
        return [(factor, n_normalize, loss)]
    parts = []
    for key, sub in loss.losses.items():
        parts.extend(loss_parts(sub, factor * loss.weights[key], n_normalize + int(loss.normalize)))
    return parts


class _WithLoss:
    """What the five components share: binding, checking and calling the loss.

    Subclasses implement ``_loss_and_grad(loss, examples, scores)`` for one
    (non-``WeightedSum``) loss, returning ``(gradient, loss value)``.
    """

    factory_name = ""

    def _init_loss(self, loss: Loss) -> None:
        self.loss = loss
        self._bound = None  # (labels, [(weight, n_normalize, loss with names)], output kind)

    def _check_loss(self) -> str:
        """The model's output kind; raises ValueError if the loss cannot train it."""
        kind = output_kind(self.model)
        for _, _, leaf in loss_parts(self.loss):
            problem = pairing_problem(leaf, kind) or self._format_problem(leaf)
            if problem:
                where = f"'{self.name}'" + ("" if self.name == self.factory_name else f" ({self.factory_name})")
                raise ValueError(f"Cannot use {loss_label(leaf)} as the loss of {where}: {problem}")
        return kind

    def _format_problem(self, loss) -> Optional[str]:
        return None

    def _bound_loss(self):
        labels = tuple(self.labels)
        if self._bound is None or self._bound[0] != labels:
            kind = self._check_loss()
            parts = []
            for weight, n_normalize, leaf in loss_parts(self.loss):
                try:
                    bound = bind_names(leaf, list(labels)) if labels else leaf
                except ValueError as err:
                    raise ValueError(f"Cannot use {loss_label(leaf)} as the loss of '{self.name}': {err}") from None
                parts.append((weight, n_normalize, bound))
            self._bound = (labels, parts, kind)
        return self._bound

    def get_loss(self, examples, scores):
        """The loss (a float) and the gradient to hand to the model's output layer."""
        validate_examples(examples, f"{type(self).__name__}.get_loss")
        _, parts, kind = self._bound_loss()
        n = len(scores) if isinstance(scores, list) else int(scores.shape[0])
        total_grad, total = None, 0.0
        for weight, n_normalize, loss in parts:
            grad, value = self._loss_and_grad(loss, examples, scores)
            grad = adapt_gradient(grad, scores, target=gradient_target(loss), kind=kind)
            factor = weight / n**n_normalize if n else weight
            if len(parts) == 1 and factor == 1.0:
                total_grad, total = grad, float(value)
                break
            total += factor * float(value)
            total_grad = _add_scaled(total_grad, grad, factor)
        if total != total:
            raise ValueError(f"The loss of '{self.name}' is NaN: check the model's outputs and the loss settings")
        return total, total_grad


def _add_scaled(total, grad, factor: float):
    if isinstance(grad, list):
        return [_add_scaled(None if total is None else t, g, factor) for t, g in zip(total or [None] * len(grad), grad)]
    return grad * factor if total is None else total + grad * factor


# Doc and token classification ---------------------------------------------------


class _TextcatLoss(_WithLoss):
    """Text classifiers: dense truth rows (spaCy's), or one label per doc for sparse losses."""

    def _format_problem(self, loss) -> Optional[str]:
        if truth_format(loss) == SEQUENCE:
            return "it scores token sequences; use SparseCategoricalCrossentropy.v4 or CategoricalCrossentropy.v4"
        return None

    def _loss_and_grad(self, loss, examples, scores):
        truths, not_missing = self._examples_to_truth(examples)
        xp = self.model.ops.xp
        not_missing = self.model.ops.asarray(not_missing)
        if truth_format(loss) == LABELS:
            return call_loss(loss, scores, self._labels_of(truths, not_missing), None, self.name)
        weight = None if bool(not_missing.all()) else not_missing
        if is_softmax_family(loss):
            # A doc with no positive label has no target distribution: mask it.
            empty = truths.sum(axis=1) == 0
            if bool(empty.any()):
                truths = xp.where(empty[:, None], 1.0 / truths.shape[1], truths).astype(truths.dtype)
                keep = xp.where(empty[:, None], 0.0, 1.0).astype(truths.dtype)
                weight = keep if weight is None else weight * keep
        return call_loss(loss, scores, truths, weight, self.name)

    def _labels_of(self, truths, not_missing) -> List[Optional[str]]:
        labels = []
        for row, known in zip(truths.tolist(), not_missing.tolist()):
            hot = [self.labels[j] for j, value in enumerate(row) if value == 1.0 and known[j]]
            if len(hot) > 1:
                raise ValueError(
                    f"Cannot calculate the loss of '{self.name}': a doc has several positive labels {hot}, "
                    "but the loss takes one label per doc; use BinaryCrossentropy.v1"
                )
            labels.append(hot[0] if hot else None)
        return labels


class _TokenLoss(_WithLoss):
    """Tagger, senter, morphologizer: one label (str, or None if missing) per token."""

    def _token_truths(self, examples) -> List[List[Optional[str]]]:
        raise NotImplementedError

    def _loss_and_grad(self, loss, examples, scores):
        truths = self._token_truths(examples)
        fmt = truth_format(loss)
        if not scores and fmt != SEQUENCE:
            return [], 0.0
        if fmt == SEQUENCE and getattr(loss, "sparse", True):
            return call_loss(loss, scores, truths, None, self.name)
        if fmt == SEQUENCE:  # dense targets per sequence
            dense = [self._one_hot(loss, t, s) for t, s in zip(truths, scores)]
            weights = [w for _, w in dense]
            weights = (
                None if all(w is None for w in weights) else [self._ones_if_none(w, s) for w, s in zip(weights, scores)]
            )
            return call_loss(loss, scores, [d for d, _ in dense], weights, self.name)
        ops = self.model.ops
        lengths = [len(t) for t in truths]
        flat_scores = ops.xp.concatenate(scores) if len(scores) != 1 else scores[0]
        flat_truths = [label for doc_truths in truths for label in doc_truths]
        if fmt == LABELS:
            grad, value = call_loss(loss, flat_scores, flat_truths, None, self.name)
        else:
            target, weight = self._one_hot(loss, flat_truths, flat_scores)
            grad, value = call_loss(loss, flat_scores, target, weight, self.name)
        return _split(grad, lengths), value

    def _one_hot(self, loss, labels, scores):
        """Dense one-hot rows for ``labels``; rows without a label get weight 0."""
        xp = self.model.ops.xp
        n, n_classes = scores.shape
        index = {name: i for i, name in enumerate(self.labels)}
        target = xp.zeros((n, n_classes), dtype=scores.dtype)
        rows, cols, missing = [], [], []
        for i, label in enumerate(labels):
            if label is None:
                missing.append(i)
            elif label in index:
                rows.append(i)
                cols.append(index[label])
            else:
                raise ValueError(
                    f"Cannot calculate the loss of '{self.name}': the label {label!r} is not one of its labels "
                    f"(negative labels need a loss that takes label lists, such as SequenceCategoricalCrossentropy.v4)"
                )
        if rows:
            target[xp.asarray(rows), xp.asarray(cols)] = 1.0
        if not missing:
            return target, None
        weight = xp.ones((n, 1), dtype=scores.dtype)
        weight[xp.asarray(missing)] = 0.0
        if is_softmax_family(loss):  # a masked row still needs a valid distribution
            target[xp.asarray(missing)] = 1.0 / n_classes
        return target, weight

    def _ones_if_none(self, weight, scores):
        return self.model.ops.xp.ones((scores.shape[0], 1), dtype=scores.dtype) if weight is None else weight


def _split(grad, lengths):
    out, start = [], 0
    for length in lengths:
        out.append(grad[start : start + length])
        start += length
    return out
