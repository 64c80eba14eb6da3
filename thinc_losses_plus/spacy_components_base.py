"""What the ``*_with_loss`` spaCy components share (see :mod:`.spacy_components`).

A component binds its labels to the configured loss (``names``), checks the
loss against the model's output layer, builds the truths in the form the loss
takes (per-sequence label lists, a flat label list, or dense rows with sample
weights for missing values), calls the loss, and converts its gradient for
the output layer (:mod:`.output_layers`). A ``WeightedSum`` loss is split
into its parts, each called and converted on its own, so that parts with
different gradient conventions can be mixed.
"""

import copy
import inspect
import warnings
from typing import List, Optional

from spacy.language import Language
from spacy.training import validate_examples
from thinc import loss as thinc_loss
from thinc.loss import Loss

from . import LossCalculator, MultiMargin, SequenceCategoricalCrossentropy, SparseCategoricalCrossentropy, WeightedSum
from .output_layers import adapt_gradient, gradient_target, output_kind, pairing_problem

try:  # spaCy >= 3.8.5 registers its built-in factories on demand
    from spacy.pipeline.factories import register_factories
except ImportError:  # older 3.8: registered when spacy.pipeline is imported
    pass
else:
    register_factories()

SEQUENCE, LABELS, DENSE = "sequence", "labels", "dense"

#: The default ``loss`` of each ``*_with_loss`` factory, keyed by the built-in it
#: extends: the loss whose gradient is the built-in's, bit for bit.
DEFAULT_LOSSES = {
    "textcat": {"@losses": "CategoricalCrossentropy.v4", "normalize": False},
    "textcat_multilabel": {"@losses": "L2Distance.v2", "normalize": False},
    "tagger": {"@losses": "SequenceCategoricalCrossentropy.v4", "normalize": False},
    "senter": {"@losses": "SequenceCategoricalCrossentropy.v4", "normalize": False},
    "morphologizer": {"@losses": "SequenceCategoricalCrossentropy.v4", "normalize": False},
    "spancat": {"@losses": "L2Distance.v2", "normalize": False},
    "spancat_singlelabel": {"@losses": "CategoricalCrossentropy.v4", "normalize": False},
    "span_finder": {"@losses": "L2Distance.v2", "normalize": False},
    "trainable_lemmatizer": {"@losses": "SequenceCategoricalCrossentropy.v4", "normalize": False, "missing_value": -1},
    # spaCy's own: Thinc's cosine distance (this package's CosineDistance.v2 differs in the last bit)
    "entity_linker": {"@losses": "CosineDistance.v1", "normalize": False},
}


def _factory(name: str, extends: str):
    """Register the decorated function as ``name``: the built-in ``extends``'s
    defaults, analysis and score weights, plus a ``loss`` block."""
    meta = Language.get_factory_meta(extends)
    return Language.factory(
        name,
        default_config={**meta.default_config, "loss": DEFAULT_LOSSES[extends]},
        assigns=meta.assigns,
        requires=meta.requires,
        retokenizes=meta.retokenizes,
        default_score_weights=meta.default_score_weights,
    )


def truth_format(loss, *, rows: bool = False) -> str:
    """How a loss takes its truths: per-sequence label lists, a flat label list, or dense rows.

    A loss that takes labels (``takes_labels``: names, ``missing_value``,
    ``neg_prefix``) gets a flat label list, the only form in which a token's
    negative label ("!NN") reaches it. ``rows``: the component's truths are
    target rows (doc and span classifiers, whose annotation may be soft), so
    a loss that takes target rows too gets the rows.
    """
    if isinstance(loss, (SequenceCategoricalCrossentropy, thinc_loss.SequenceCategoricalCrossentropy)):
        return SEQUENCE
    if isinstance(loss, (SparseCategoricalCrossentropy, thinc_loss.CategoricalCrossentropy)):
        return LABELS
    if getattr(loss, "takes_labels", False) and not (rows and takes_target_rows(loss)):
        return LABELS
    return DENSE


def takes_target_rows(loss) -> bool:
    """Whether ``loss`` takes dense target rows (float arrays of the guesses' shape) as truths."""
    return not isinstance(loss, (SparseCategoricalCrossentropy, MultiMargin))


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


def forward_settings(loss, component: str, settings: dict, name: Optional[str] = None):
    """Pass component settings (name -> (value, component default)) on to the loss.

    A loss that leaves a setting at its own default takes the component's
    value (spaCy's tagger passes ``neg_prefix = "!"`` to its loss this way).
    A loss block that sets it wins; if the component sets it too, to another
    value (``spacy init config`` writes ``label_smoothing = 0.05`` on taggers
    and morphologizers), or the loss has no such setting, a one-line warning
    names the key to delete from the component's block. So "init config,
    change the factory, add a loss block" always builds.
    """
    params = inspect.signature(type(loss).__init__).parameters
    block = f"[components.{name or component}]"
    overrides = {}
    for arg, (value, default) in settings.items():
        if arg not in params or _setting(loss, arg) is _ABSENT:
            if value != default:
                warnings.warn(
                    f"'{name or component}' ({component}): delete '{arg}' from {block}: its loss "
                    f"{loss_label(loss)} has no '{arg}' setting, so '{arg} = {value!r}' is not used",
                    UserWarning,
                    stacklevel=3,
                )
            continue
        current = _setting(loss, arg)
        if current == params[arg].default:
            if value != current:
                overrides[arg] = value
        elif value != default and value != current:
            warnings.warn(
                f"'{name or component}' ({component}): delete '{arg}' from {block}: the loss block's "
                f"'{arg} = {current!r}' is used, not the component's {value!r}",
                UserWarning,
                stacklevel=3,
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
    """What every ``*_with_loss`` component shares: binding, checking and calling the loss.

    ``pipe.loss`` is the loss that runs: the configured loss until the
    component knows its labels, then (after ``initialize``, or loading from
    disk) a copy with the labels bound as ``names`` and counted
    ``"balanced"`` class weights bound (:mod:`.spacy_class_weights`).
    Subclasses implement ``_loss_and_grad(loss, examples, scores)`` for one
    (non-``WeightedSum``) loss, returning ``(gradient, loss value)``.
    """

    factory_name = ""
    #: Divide the reported value of a loss with ``normalize = false`` by the
    #: number of examples (textcat: spaCy's issue #9904). Gradients are unchanged.
    report_per_example = False

    def _init_loss(self, loss: Loss) -> None:
        self.configured_loss = loss
        self.loss = loss
        self._bound = None  # (key, [(weight, n_normalize, leaf)], output kind)

    def _loss_names(self) -> Optional[List[str]]:
        """The names the loss's columns take (the component's labels, in column order)."""
        return list(self.labels)

    def _binding_key(self):
        """What the bound loss depends on: the labels, and the stored class weights (compared by
        identity: ``cfg`` gets a new object whenever they are counted or loaded; the key holds it,
        so its identity cannot pass to another object)."""
        return tuple(self.labels), self.cfg.get(CFG_WEIGHTS)

    def _bind_loss(self) -> None:
        """Set ``self.loss`` to the configured loss with labels and stored class weights bound."""
        from .spacy_class_weights import stored_weights

        names = self._loss_names()
        stored = self.cfg.get(CFG_WEIGHTS, {})

        def bind(path, leaf):
            try:
                bound = bind_names(leaf, list(names)) if names else leaf
                if is_balanced(leaf) and path in stored:
                    bound = bound.with_class_weights(stored_weights(stored[path]))
            except ValueError as err:
                raise ValueError(f"Cannot use {loss_label(leaf)} as the loss of '{self.name}': {err}") from None
            return bound

        self.loss = map_leaves(self.configured_loss, bind)
        self._bound = None

    def _check_loss(self) -> str:
        """The model's output kind; raises ValueError if the loss cannot train it."""
        kind = output_kind(self.model)
        for _, _, leaf in loss_parts(self.configured_loss):
            problem = pairing_problem(leaf, kind) or self._format_problem(leaf)
            if problem:
                where = f"'{self.name}'" + ("" if self.name == self.factory_name else f" ({self.factory_name})")
                raise ValueError(f"Cannot use {loss_label(leaf)} as the loss of {where}: {problem}")
        return kind

    def _format_problem(self, loss) -> Optional[str]:
        return None

    def _bound_loss(self):
        key = self._binding_key()
        if self._bound is None or self._bound[0][1] is not key[1] or self._bound[0][0] != key[0]:
            kind = self._check_loss()
            self._bind_loss()
            self._bound = (key, loss_parts(self.loss), kind)
        return self._bound

    def _initialize_loss(self, get_examples) -> None:
        """After the built-in's ``initialize``: count ``"balanced"`` class weights, bind the loss."""
        from .spacy_class_weights import count_and_store

        count_and_store(self, get_examples)
        self._bind_loss()

    def _class_counts(self, get_examples):
        """``(Counter label -> count, what is counted)`` over the training corpus (for "balanced")."""
        raise ValueError(
            f"Cannot count class weights for '{self.name}': {type(self).__name__} has no classes to count"
        )

    def _rebind_after_loading(self):
        if self.labels:
            self._bind_loss()

    def from_disk(self, path, *, exclude=tuple()):
        result = super().from_disk(path, exclude=exclude)
        self._rebind_after_loading()
        return result

    def from_bytes(self, bytes_data, *, exclude=tuple()):
        result = super().from_bytes(bytes_data, exclude=exclude)
        self._rebind_after_loading()
        return result

    def get_loss(self, examples, scores):
        """The loss (a float) and the gradient to hand to the model's output layer."""
        validate_examples(examples, f"{type(self).__name__}.get_loss")
        return self._sum_parts(scores, lambda loss: self._loss_and_grad(loss, examples, scores))

    def _sum_parts(self, scores, loss_and_grad, n: Optional[int] = None):
        """Call each part of the loss, convert its gradient for the output layer, and sum."""
        _, parts, kind = self._bound_loss()
        if n is None:
            n = len(scores) if isinstance(scores, list) else int(scores.shape[0])
        total_grad, total = None, 0.0
        for weight, n_normalize, loss in parts:
            grad, value = loss_and_grad(loss)
            grad = adapt_gradient(grad, scores, target=gradient_target(loss), kind=kind)
            factor = weight / n**n_normalize if n else weight
            value = float(value)
            if self.report_per_example and n and not _setting(loss, "normalize"):
                value /= n
            if len(parts) == 1 and factor == 1.0:
                total_grad, total = grad, value
                break
            total += factor * value
            total_grad = _add_scaled(total_grad, grad, factor)
        if total != total:
            raise ValueError(f"The loss of '{self.name}' is NaN: check the model's outputs and the loss settings")
        return total, total_grad


#: Where a component keeps counted class weights in its ``cfg`` (saved with the pipeline).
CFG_WEIGHTS = "loss_class_weights"


def is_balanced(loss) -> bool:
    weights = getattr(loss, "class_weights", None)
    return isinstance(weights, str) and weights == "balanced"


def map_leaves(loss, fn, path: str = ""):
    """``loss`` with each non-``WeightedSum`` leaf replaced by ``fn(path, leaf)``.

    ``path`` names the leaf: ``""`` for a plain loss, ``"a.b"`` for the
    sub-loss ``b`` of the sub-loss ``a`` of a ``WeightedSum``.
    """
    if not isinstance(loss, WeightedSum):
        return fn(path, loss)
    clone = copy.copy(loss)
    clone.losses = {
        key: map_leaves(sub, fn, f"{path}.{key}" if path else key) for key, sub in loss.losses.items()
    }
    return clone


def leaves(loss, path: str = ""):
    """``[(path, leaf)]`` for the leaves of (nested) ``WeightedSum`` losses."""
    found = []
    map_leaves(loss, lambda p, leaf: found.append((p, leaf)) or leaf, path)
    return found


def _add_scaled(total, grad, factor: float):
    if isinstance(grad, list):
        return [_add_scaled(None if total is None else t, g, factor) for t, g in zip(total or [None] * len(grad), grad)]
    return grad * factor if total is None else total + grad * factor
