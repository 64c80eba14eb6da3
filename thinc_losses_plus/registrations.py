"""Every registered, versioned factory: the only target of the entry points.

Each ``configure_<Name>_vN`` is frozen once released: it accepts exactly the
arguments that version accepted, with the same defaults, and is fully
type-annotated so that config validation refuses a wrong type or an unknown
argument. A behaviour change adds ``vN+1`` beside it. Nothing here is
registered at import: ``setup.cfg``'s ``thinc_losses`` entry points point here.
"""
from typing import Any, Dict, List, Optional, Union

from thinc.loss import Loss

from .binary import BinaryCrossentropy, BinaryFocalCrossentropy
from .categorical import CategoricalCrossentropy, SparseCategoricalCrossentropy
from .categorical_focal import CategoricalFocalCrossentropy
from .combine import WeightedSum
from .ctc import CTC
from .distillation import KLDivergence
from .imbalance import AsymmetricLoss, Dice, GeneralizedCrossentropy, Tversky
from .embedding import CosineDistance, CosineEmbedding, MaximumMeanDiscrepancy, TripletMargin
from .likelihood import GaussianNLL, PoissonNLL
from .margin import Hinge, LogisticLoss, MultiMargin, SquaredHinge
from .regression import Huber, L1Distance, L2Distance, LogCosh, SmoothL1
from .sequence import SequenceCategoricalCrossentropy
from .transition import PartialLabelCrossentropy

#: A dict name -> weight, a list indexed by class, or "balanced" (counted from the corpus).
ClassWeights = Optional[Union[Dict[str, float], List[float], str]]

# Categorical (softmax family) --------------------------------------------

def configure_CategoricalCrossentropy_v4(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    names: Optional[List[str]] = None,
    missing_value: Optional[int] = None,
    label_smoothing: float = 0.0,
    from_logits: bool = False,
    class_weights: ClassWeights = None,
    from_log_probs: bool = False,
) -> CategoricalCrossentropy:
    return CategoricalCrossentropy(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        names=names,
        missing_value=missing_value,
        label_smoothing=label_smoothing,
        from_logits=from_logits,
        class_weights=class_weights,
        from_log_probs=from_log_probs,
    )


def configure_SparseCategoricalCrossentropy_v4(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    names: Optional[List[str]] = None,
    missing_value: Optional[Union[int, str]] = None,
    neg_prefix: Optional[str] = None,
    label_smoothing: float = 0.0,
    from_logits: bool = False,
    class_weights: ClassWeights = None,
    from_log_probs: bool = False,
) -> SparseCategoricalCrossentropy:
    return SparseCategoricalCrossentropy(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        names=names,
        missing_value=missing_value,
        neg_prefix=neg_prefix,
        label_smoothing=label_smoothing,
        from_logits=from_logits,
        class_weights=class_weights,
        from_log_probs=from_log_probs,
    )


def configure_SequenceCategoricalCrossentropy_v4(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    sparse: bool = True,
    names: Optional[List[str]] = None,
    missing_value: Optional[Union[int, str]] = None,
    neg_prefix: Optional[str] = None,
    label_smoothing: float = 0.0,
    from_logits: bool = False,
    class_weights: ClassWeights = None,
    from_log_probs: bool = False,
) -> SequenceCategoricalCrossentropy:
    return SequenceCategoricalCrossentropy(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        sparse=sparse,
        names=names,
        missing_value=missing_value,
        neg_prefix=neg_prefix,
        label_smoothing=label_smoothing,
        from_logits=from_logits,
        class_weights=class_weights,
        from_log_probs=from_log_probs,
    )


def configure_CategoricalFocalCrossentropy_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    gamma: float = 2.0,
    alpha: float = 1.0,
    class_weights: ClassWeights = None,
    names: Optional[List[str]] = None,
    missing_value: Optional[Union[int, str]] = None,
    neg_prefix: Optional[str] = None,
    label_smoothing: float = 0.0,
    from_logits: bool = False,
) -> CategoricalFocalCrossentropy:
    return CategoricalFocalCrossentropy(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        gamma=gamma,
        alpha=alpha,
        class_weights=class_weights,
        names=names,
        missing_value=missing_value,
        neg_prefix=neg_prefix,
        label_smoothing=label_smoothing,
        from_logits=from_logits,
    )


def configure_KLDivergence_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    from_logits: bool = False,
    temperature: float = 1.0,
) -> KLDivergence:
    return KLDivergence(normalize=normalize, weight=weight, reduction=reduction, from_logits=from_logits, temperature=temperature)


# Binary and multi-label (sigmoid family) ------------------------------------

def configure_BinaryCrossentropy_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    from_logits: bool = False,
    pos_weight: Optional[Union[float, List[float]]] = None,
    label_smoothing: float = 0.0,
    missing_value: Optional[float] = None,
    class_weights: ClassWeights = None,
    names: Optional[List[str]] = None,
) -> BinaryCrossentropy:
    return BinaryCrossentropy(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        from_logits=from_logits,
        pos_weight=pos_weight,
        label_smoothing=label_smoothing,
        missing_value=missing_value,
        class_weights=class_weights,
        names=names,
    )


def configure_BinaryFocalCrossentropy_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    gamma: float = 2.0,
    alpha: Optional[float] = None,
    from_logits: bool = False,
    missing_value: Optional[float] = None,
) -> BinaryFocalCrossentropy:
    return BinaryFocalCrossentropy(
        normalize=normalize, weight=weight, reduction=reduction, gamma=gamma, alpha=alpha, from_logits=from_logits, missing_value=missing_value
    )


def configure_Hinge_v1(*, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", margin: float = 1.0) -> Hinge:
    return Hinge(normalize=normalize, weight=weight, reduction=reduction, margin=margin)


def configure_SquaredHinge_v1(*, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", margin: float = 1.0) -> SquaredHinge:
    return SquaredHinge(normalize=normalize, weight=weight, reduction=reduction, margin=margin)


def configure_Logistic_v1(*, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", label_format: str = "signed") -> LogisticLoss:
    return LogisticLoss(normalize=normalize, weight=weight, reduction=reduction, label_format=label_format)


def configure_MultiMargin_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    p: int = 1,
    margin: float = 1.0,
    class_weights: ClassWeights = None,
    names: Optional[List[str]] = None,
    missing_value: Optional[Union[int, str]] = None,
) -> MultiMargin:
    return MultiMargin(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        p=p,
        margin=margin,
        class_weights=class_weights,
        names=names,
        missing_value=missing_value,
    )


# Regression ------------------------------------------------------------------

def configure_L2Distance_v2(*, normalize: bool = True, weight: float = 1.0, reduction: str = "examples") -> L2Distance:
    return L2Distance(normalize=normalize, weight=weight, reduction=reduction)


def configure_L1Distance_v1(*, normalize: bool = True, weight: float = 1.0, reduction: str = "examples") -> L1Distance:
    return L1Distance(normalize=normalize, weight=weight, reduction=reduction)


def configure_Huber_v1(*, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", delta: float = 1.0) -> Huber:
    return Huber(normalize=normalize, weight=weight, reduction=reduction, delta=delta)


def configure_SmoothL1_v1(*, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", beta: float = 1.0) -> SmoothL1:
    return SmoothL1(normalize=normalize, weight=weight, reduction=reduction, beta=beta)


def configure_LogCosh_v1(*, normalize: bool = True, weight: float = 1.0, reduction: str = "examples") -> LogCosh:
    return LogCosh(normalize=normalize, weight=weight, reduction=reduction)


def configure_PoissonNLL_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    from_logits: bool = False,
    full: bool = False,
    eps: float = 1e-8,
) -> PoissonNLL:
    return PoissonNLL(normalize=normalize, weight=weight, reduction=reduction, from_logits=from_logits, full=full, eps=eps)


def configure_GaussianNLL_v1(*, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", full: bool = False, eps: float = 1e-6) -> GaussianNLL:
    return GaussianNLL(normalize=normalize, weight=weight, reduction=reduction, full=full, eps=eps)


# Embeddings ------------------------------------------------------------------

def configure_CosineDistance_v2(
    *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", ignore_zeros: bool = False, eps: float = 1e-8
) -> CosineDistance:
    return CosineDistance(normalize=normalize, weight=weight, reduction=reduction, ignore_zeros=ignore_zeros, eps=eps)


def configure_CosineEmbedding_v1(*, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", margin: float = 0.0) -> CosineEmbedding:
    return CosineEmbedding(normalize=normalize, weight=weight, reduction=reduction, margin=margin)


def configure_TripletMargin_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    squared: bool = False,
) -> TripletMargin:
    return TripletMargin(normalize=normalize, weight=weight, reduction=reduction, margin=margin, p=p, eps=eps, swap=swap, squared=squared)


def configure_MaximumMeanDiscrepancy_v1(
    *, normalize: bool = True, weight: float = 1.0, reduction: str = "examples", bandwidth: Union[float, List[float]] = 1.0
) -> MaximumMeanDiscrepancy:
    return MaximumMeanDiscrepancy(normalize=normalize, weight=weight, reduction=reduction, bandwidth=bandwidth)


# Sequences (CTC) -------------------------------------------------------------

def configure_CTC_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    blank: int = 0,
    zero_infinity: bool = False,
    names: Optional[List[str]] = None,
    from_logits: bool = False,
) -> CTC:
    return CTC(
        normalize=normalize, weight=weight, reduction=reduction, blank=blank, zero_infinity=zero_infinity, names=names, from_logits=from_logits
    )


# Partial labels (spaCy's transition-based loss) ----------------------------

def configure_PartialLabelCrossentropy_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    names: Optional[List[str]] = None,
    column_labels: Optional[List[str]] = None,
    class_weights: ClassWeights = None,
    missing_label: str = "-",
    gamma: float = 0.0,
) -> PartialLabelCrossentropy:
    return PartialLabelCrossentropy(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        names=names,
        column_labels=column_labels,
        class_weights=class_weights,
        missing_label=missing_label,
        gamma=gamma,
    )


# Imbalance and noisy labels ------------------------------------------------

def configure_Dice_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    smooth: float = 1.0,
    average: str = "samples",
    squared_denominator: bool = False,
    self_adjusting: float = 0.0,
    from_logits: bool = False,
    missing_value: Optional[float] = None,
) -> Dice:
    return Dice(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        smooth=smooth,
        average=average,
        squared_denominator=squared_denominator,
        self_adjusting=self_adjusting,
        from_logits=from_logits,
        missing_value=missing_value,
    )


def configure_Tversky_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    alpha: float = 0.3,
    beta: float = 0.7,
    smooth: float = 1.0,
    average: str = "samples",
    from_logits: bool = False,
    missing_value: Optional[float] = None,
) -> Tversky:
    return Tversky(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        alpha=alpha,
        beta=beta,
        smooth=smooth,
        average=average,
        from_logits=from_logits,
        missing_value=missing_value,
    )


def configure_GeneralizedCrossentropy_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    q: float = 0.7,
    names: Optional[List[str]] = None,
    missing_value: Optional[Union[int, str]] = None,
    neg_prefix: Optional[str] = None,
    from_logits: bool = False,
    class_weights: ClassWeights = None,
) -> GeneralizedCrossentropy:
    return GeneralizedCrossentropy(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        q=q,
        names=names,
        missing_value=missing_value,
        neg_prefix=neg_prefix,
        from_logits=from_logits,
        class_weights=class_weights,
    )


def configure_AsymmetricLoss_v1(
    *,
    normalize: bool = True,
    weight: float = 1.0,
    reduction: str = "examples",
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    from_logits: bool = False,
    missing_value: Optional[float] = None,
) -> AsymmetricLoss:
    return AsymmetricLoss(
        normalize=normalize,
        weight=weight,
        reduction=reduction,
        gamma_pos=gamma_pos,
        gamma_neg=gamma_neg,
        clip=clip,
        from_logits=from_logits,
        missing_value=missing_value,
    )


# Combination -----------------------------------------------------------------

#: Name -> a resolved loss calculator. confection >= 1.0 validates a nested
#: ``[loss.losses.x]`` block before resolving it, so the unresolved ``@losses``
#: block (a dict) must validate too; WeightedSum refuses anything but a Loss.
LossBlocks = Dict[str, Union[Loss, Dict[str, Any]]]


def configure_WeightedSum_v1(
    *,
    losses: LossBlocks,
    weights: Optional[Dict[str, float]] = None,
    normalize: bool = False,
    weight: float = 1.0,
    reduction: str = "examples",
) -> WeightedSum:
    return WeightedSum(losses=losses, weights=weights, normalize=normalize, weight=weight, reduction=reduction)
