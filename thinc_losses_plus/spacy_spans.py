"""Span components with a configurable loss: ``spancat``, ``spancat_singlelabel``, ``span_finder``.

=================================  =====================  =====================================
factory                            extends                default ``loss`` (= spaCy's gradient)
=================================  =====================  =====================================
``spancat_with_loss``              ``spancat``            ``L2Distance.v2``, normalize = false
``spancat_singlelabel_with_loss``  ``spancat_singlelabel`` ``CategoricalCrossentropy.v4``, normalize = false
``span_finder_with_loss``          ``span_finder``        ``L2Distance.v2``, normalize = false
=================================  =====================  =====================================

Truths, as spaCy builds them: one row per suggested span, 1.0 in the column
of each gold label of that span. ``spancat_singlelabel`` has one more
column, the negative label (named ``"<negative>"`` for the loss, so
``class_weights`` can weigh it), the target of every suggested span that is
not a gold span; its ``negative_weight`` reaches the loss as a sample weight
of those rows (whatever the loss). The ``span_finder`` scores two columns
per token, ``"start"`` and ``"end"``; positions that spaCy cannot align are
masked (sample weight 0).

spaCy reports ``sum((scores - target)^2)`` for all three; these components
report the configured loss (``L2Distance.v2`` reports half of that).
"""

from collections import Counter
from typing import Callable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import SpanCategorizer
from spacy.pipeline.span_finder import SpanFinder
from spacy.pipeline.spancat import Suggester
from spacy.tokens import Doc
from thinc.api import Model
from thinc.loss import Loss
from thinc.types import Floats2d, Ragged

from .output_layers import is_softmax_family
from .spacy_components_base import DENSE, LABELS, SEQUENCE, _factory, _WithLoss, call_loss, truth_format

#: The name of ``spancat_singlelabel``'s negative-label column, for the loss.
NEGATIVE_LABEL = "<negative>"


class SpanCategorizerWithLoss(_WithLoss, SpanCategorizer):
    """spaCy's ``spancat`` / ``spancat_singlelabel`` with a configurable loss."""

    factory_name = "spancat_with_loss"

    def __init__(self, vocab, model, suggester, name="spancat", *, loss: Loss, factory_name=None, **settings):
        super().__init__(vocab, model, suggester, name, **settings)
        if factory_name:
            self.factory_name = factory_name
        self._init_loss(loss)

    def _loss_names(self) -> List[str]:
        labels = list(self.labels)
        if not self.add_negative_label:
            return labels
        if NEGATIVE_LABEL in labels:
            raise ValueError(f"Cannot use the label {NEGATIVE_LABEL!r} in '{self.name}': it names the negative label")
        return labels + [NEGATIVE_LABEL]

    def _format_problem(self, loss) -> Optional[str]:
        if truth_format(loss, rows=True) == SEQUENCE:
            return "it scores token sequences; use a loss over rows, such as CategoricalCrossentropy.v4"
        return None

    def initialize(self, get_examples, *, nlp=None, labels=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._initialize_loss(get_examples)

    def get_loss(self, examples, spans_scores: Tuple[Ragged, Floats2d]):
        """The loss and the gradient of the span scores (``spans_scores`` = (suggested spans, scores))."""
        spans, scores = spans_scores
        target, negative = self._targets(examples, spans, scores)
        ops = self.model.ops
        row_weight = None
        neg_weight = self.cfg["negative_weight"]
        if negative is not None and neg_weight is not None and neg_weight != 1.0 and negative.any():
            row_weight = numpy.ones((scores.shape[0], 1), dtype=scores.dtype)
            row_weight[negative] = neg_weight
        # The targets and masks are built and checked on the host: no device round trip per check.
        target = target.astype("f", copy=False)
        empty = target.sum(axis=1) == 0
        masked_target = masked_keep = None
        if empty.any():  # for softmax losses: a span without any label has no target distribution
            masked_target = numpy.where(empty[:, None], numpy.float32(1.0 / target.shape[1]), target)
            masked_keep = (~empty[:, None]).astype(target.dtype)
        device_target = ops.asarray(target)

        def loss_and_grad(loss):
            weight = row_weight
            if truth_format(loss, rows=True) == LABELS:
                return self._call_sparse(loss, scores, target, None if weight is None else ops.asarray(weight))
            truths = device_target
            if is_softmax_family(loss) and masked_target is not None:
                truths = ops.asarray(masked_target)
                weight = masked_keep if weight is None else weight * masked_keep
            return call_loss(loss, scores, truths, None if weight is None else ops.asarray(weight), self.name)

        return self._sum_parts(scores, loss_and_grad)

    def _call_sparse(self, loss, scores, target, weight):
        """The loss of one label per span (None: no gold label) from the host target rows."""
        names = self._loss_names()
        hot = target == 1.0
        n_hot = hot.sum(axis=1)
        if (n_hot > 1).any():
            several = [names[j] for j in numpy.flatnonzero(hot[int(numpy.flatnonzero(n_hot > 1)[0])]).tolist()]
            raise ValueError(
                f"Cannot calculate the loss of '{self.name}': a span has several gold labels {several}, "
                "but the loss takes one label per span; use BinaryCrossentropy.v1"
            )
        labels = [names[j] if h else None for j, h in zip(hot.argmax(axis=1).tolist(), n_hot.tolist())]
        if weight is not None and hasattr(weight, "reshape"):
            weight = weight.reshape(-1)
        return call_loss(loss, scores, labels, weight, self.name)

    def _targets(self, examples, spans: Ragged, scores):
        """spaCy's target rows (a numpy array), and which rows are negative spans (or None)."""
        # (start, end) of every suggested span, as Python ints, in one transfer and one conversion
        starts_ends = list(map(tuple, self.model.ops.to_numpy(spans.data).reshape(-1, 2).tolist()))
        lengths = self.model.ops.to_numpy(spans.lengths).tolist()
        target = numpy.zeros(scores.shape, dtype=scores.dtype)
        negative = numpy.ones((scores.shape[0],), dtype=bool) if self.add_negative_label else None
        offset = 0
        label_map = self._label_map
        for eg, length in zip(examples, lengths):
            # (start, end) -> its row (the last one, as spaCy's, if a span is suggested twice)
            spans_index = dict(zip(starts_ends[offset : offset + length], range(offset, offset + length)))
            for gold_span in self._get_aligned_spans(eg):
                row = spans_index.get((gold_span.start, gold_span.end))
                if row is not None:
                    target[row, label_map[gold_span.label_]] = 1.0
                    if negative is not None:
                        negative[row] = False
            offset += length
        if negative is not None:
            target[negative, self._negative_label_i] = 1.0
        return target, negative

    def _class_counts(self, get_examples):
        """Gold spans per label; for the negative label, the suggested spans that are not gold spans."""
        counts: Counter = Counter()
        for eg in get_examples():
            gold = self._get_aligned_spans(eg)
            counts.update(span.label_ for span in gold)
            if self.add_negative_label:
                suggested = self.suggester([eg.predicted])
                starts_ends = {tuple(map(int, row)) for row in self.model.ops.to_numpy(suggested.dataXd).tolist()}
                counts[NEGATIVE_LABEL] += len(starts_ends - {(span.start, span.end) for span in gold})
        return counts, "spans"


class SpanFinderWithLoss(_WithLoss, SpanFinder):
    """spaCy's ``span_finder`` with a configurable loss (columns ``"start"`` and ``"end"``)."""

    factory_name = "span_finder_with_loss"

    def __init__(self, nlp, model, name="span_finder", *, loss: Loss, **settings):
        super().__init__(nlp, model, name, **settings)
        self._init_loss(loss)

    def _loss_names(self) -> List[str]:
        return ["start", "end"]

    def _format_problem(self, loss) -> Optional[str]:
        if truth_format(loss, rows=True) != DENSE:
            return "it scores each token's start and end as two independent columns; use a dense loss such as BinaryCrossentropy.v1"
        return None

    def initialize(self, get_examples, *, nlp=None):
        self._check_loss()
        super().initialize(get_examples, nlp=nlp)
        self._initialize_loss(get_examples)

    def _rebind_after_loading(self):
        self._bind_loss()

    def get_loss(self, examples, scores):
        truths, masks = self._get_aligned_truth_scores(examples, self.model.ops)
        truths = self.model.ops.asarray2f(truths)
        return self._sum_parts(scores, lambda loss: call_loss(loss, scores, truths, masks, self.name))

    def _class_counts(self, get_examples):
        """Tokens that start a span, and tokens that end one (aligned positions only)."""
        counts: Counter = Counter()
        for eg in get_examples():
            truths, masks = self._get_aligned_truth_scores([eg], self.model.ops)
            marked = self.model.ops.to_numpy(truths * masks).sum(axis=0).tolist()
            counts.update({"start": int(marked[0]), "end": int(marked[1])})
        return counts, "tokens"


@_factory("spancat_with_loss", "spancat")
def make_spancat_with_loss(
    nlp: Language,
    name: str,
    suggester: Suggester,
    model: Model[Tuple[List[Doc], Ragged], Floats2d],
    spans_key: str,
    scorer: Optional[Callable],
    threshold: float,
    max_positive: Optional[int],
    loss: Loss,
) -> SpanCategorizerWithLoss:
    return SpanCategorizerWithLoss(
        nlp.vocab,
        model,
        suggester,
        name,
        spans_key=spans_key,
        negative_weight=None,
        allow_overlap=True,
        max_positive=max_positive,
        threshold=threshold,
        scorer=scorer,
        add_negative_label=False,
        loss=loss,
    )


@_factory("spancat_singlelabel_with_loss", "spancat_singlelabel")
def make_spancat_singlelabel_with_loss(
    nlp: Language,
    name: str,
    suggester: Suggester,
    model: Model[Tuple[List[Doc], Ragged], Floats2d],
    spans_key: str,
    negative_weight: float,
    allow_overlap: bool,
    scorer: Optional[Callable],
    loss: Loss,
) -> SpanCategorizerWithLoss:
    return SpanCategorizerWithLoss(
        nlp.vocab,
        model,
        suggester,
        name,
        spans_key=spans_key,
        negative_weight=negative_weight,
        allow_overlap=allow_overlap,
        max_positive=1,
        add_negative_label=True,
        threshold=None,
        scorer=scorer,
        loss=loss,
        factory_name="spancat_singlelabel_with_loss",
    )


@_factory("span_finder_with_loss", "span_finder")
def make_span_finder_with_loss(
    nlp: Language,
    name: str,
    model: Model[List[Doc], Floats2d],
    spans_key: str,
    threshold: float,
    max_length: Optional[int],
    min_length: Optional[int],
    scorer: Optional[Callable],
    loss: Loss,
) -> SpanFinderWithLoss:
    return SpanFinderWithLoss(
        nlp,
        model,
        name,
        spans_key=spans_key,
        threshold=threshold,
        max_length=max_length,
        min_length=min_length,
        scorer=scorer,
        loss=loss,
    )
