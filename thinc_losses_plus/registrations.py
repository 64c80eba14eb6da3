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
from .categorical import CategoricalCrossentropy, CategoricalFocalCrossentropy, KLDivergence, SparseCategoricalCrossentropy
from .combine import WeightedSum
from .ctc import CTC
from .embedding import CosineDistance, CosineEmbedding
from .kernel import MaximumMeanDiscrepancy
from .likelihood import GaussianNLL, PoissonNLL
from .margin import Hinge, LogisticLoss, MultiMargin, SquaredHinge
from .regression import Huber, L1Distance, L2Distance, LogCosh, SmoothL1
from .sequence import SequenceCategoricalCrossentropy
from .triplet import TripletMargin

ClassWeights = Optional[Union[Dict[str, float], List[float]]]

# Categorical (softmax family) --------------------------------------------

def configure_CategoricalCrossentropy_v4(
    *,
    normalize: bool = True,
    names: Optional[List[str]] = None,
    missing_value: Optional[int] = None,
    label_smoothing: float = 0.0,
    from_logits: bool = False,
    class_weights: ClassWeights = None,
) -> CategoricalCrossentropy:
    return CategoricalCrossentropy(
        normalize=normalize,
        names=names,
        missing_value=missing_value,
        label_smoothing=label_smoothing,
        from_logits=from_logits,
        class_weights=class_weights,
    )


def configure_SparseCategoricalCrossentropy_v4(
    *,
    normalize: bool = True,
    names: Optional[List[str]] = None,
    missing_value: Optional[Union[int, str]] = None,
    neg_prefix: Optional[str] = None,
    label_smoothing: float = 0.0,
    from_logits: bool = False,
    class_weights: ClassWeights = None,
) -> SparseCategoricalCrossentropy:
    return SparseCategoricalCrossentropy(
        normalize=normalize,
        names=names,
        missing_value=missing_value,
        neg_prefix=neg_prefix,
        label_smoothing=label_smoothing,
        from_logits=from_logits,
        class_weights=class_weights,
    )


def configure_SequenceCategoricalCrossentropy_v4(
    *,
    normalize: bool = True,
    sparse: bool = True,
    names: Optional[List[str]] = None,
    missing_value: Optional[Union[int, str]] = None,
    neg_prefix: Optional[str] = None,
    label_smoothing: float = 0.0,
    from_logits: bool = False,
    class_weights: ClassWeights = None,
) -> SequenceCategoricalCrossentropy:
    return SequenceCategoricalCrossentropy(
        normalize=normalize,
        sparse=sparse,
        names=names,
        missing_value=missing_value,
        neg_prefix=neg_prefix,
        label_smoothing=label_smoothing,
        from_logits=from_logits,
        class_weights=class_weights,
    )


def configure_CategoricalFocalCrossentropy_v1(
    *,
    normalize: bool = True,
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
    from_logits: bool = False,
    temperature: float = 1.0,
) -> KLDivergence:
    return KLDivergence(normalize=normalize, from_logits=from_logits, temperature=temperature)


# Binary and multi-label (sigmoid family) ------------------------------------

def configure_BinaryCrossentropy_v1(
    *,
    normalize: bool = True,
    from_logits: bool = False,
    pos_weight: Optional[Union[float, List[float]]] = None,
    label_smoothing: float = 0.0,
    missing_value: Optional[float] = None,
    class_weights: ClassWeights = None,
    names: Optional[List[str]] = None,
) -> BinaryCrossentropy:
    return BinaryCrossentropy(
        normalize=normalize,
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
    gamma: float = 2.0,
    alpha: Optional[float] = None,
    from_logits: bool = False,
    missing_value: Optional[float] = None,
) -> BinaryFocalCrossentropy:
    return BinaryFocalCrossentropy(
        normalize=normalize, gamma=gamma, alpha=alpha, from_logits=from_logits, missing_value=missing_value
    )


def configure_Hinge_v1(*, normalize: bool = True, margin: float = 1.0) -> Hinge:
    return Hinge(normalize=normalize, margin=margin)


def configure_SquaredHinge_v1(*, normalize: bool = True, margin: float = 1.0) -> SquaredHinge:
    return SquaredHinge(normalize=normalize, margin=margin)


def configure_Logistic_v1(*, normalize: bool = True, label_format: str = "signed") -> LogisticLoss:
    return LogisticLoss(normalize=normalize, label_format=label_format)


def configure_MultiMargin_v1(
    *,
    normalize: bool = True,
    p: int = 1,
    margin: float = 1.0,
    class_weights: Optional[Union[Dict[str, float], List[float]]] = None,
    names: Optional[List[str]] = None,
    missing_value: Optional[Union[int, str]] = None,
) -> MultiMargin:
    return MultiMargin(
        normalize=normalize,
        p=p,
        margin=margin,
        class_weights=class_weights,
        names=names,
        missing_value=missing_value,
    )


# Regression ------------------------------------------------------------------

def configure_L2Distance_v2(*, normalize: bool = True) -> L2Distance:
    return L2Distance(normalize=normalize)


def configure_L1Distance_v1(*, normalize: bool = True) -> L1Distance:
    return L1Distance(normalize=normalize)


def configure_Huber_v1(*, normalize: bool = True, delta: float = 1.0) -> Huber:
    return Huber(normalize=normalize, delta=delta)


def configure_SmoothL1_v1(*, normalize: bool = True, beta: float = 1.0) -> SmoothL1:
    return SmoothL1(normalize=normalize, beta=beta)


def configure_LogCosh_v1(*, normalize: bool = True) -> LogCosh:
    return LogCosh(normalize=normalize)


def configure_PoissonNLL_v1(
    *,
    normalize: bool = True,
    from_logits: bool = False,
    full: bool = False,
    eps: float = 1e-8,
) -> PoissonNLL:
    return PoissonNLL(normalize=normalize, from_logits=from_logits, full=full, eps=eps)


def configure_GaussianNLL_v1(*, normalize: bool = True, full: bool = False, eps: float = 1e-6) -> GaussianNLL:
    return GaussianNLL(normalize=normalize, full=full, eps=eps)


# Embeddings ------------------------------------------------------------------

def configure_CosineDistance_v2(
    *, normalize: bool = True, ignore_zeros: bool = False, eps: float = 1e-8
) -> CosineDistance:
    return CosineDistance(normalize=normalize, ignore_zeros=ignore_zeros, eps=eps)


def configure_CosineEmbedding_v1(*, normalize: bool = True, margin: float = 0.0) -> CosineEmbedding:
    return CosineEmbedding(normalize=normalize, margin=margin)


def configure_TripletMargin_v1(
    *,
    normalize: bool = True,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    squared: bool = False,
) -> TripletMargin:
    return TripletMargin(normalize=normalize, margin=margin, p=p, eps=eps, swap=swap, squared=squared)


def configure_MaximumMeanDiscrepancy_v1(
    *, normalize: bool = True, bandwidth: Union[float, List[float]] = 1.0
) -> MaximumMeanDiscrepancy:
    return MaximumMeanDiscrepancy(normalize=normalize, bandwidth=bandwidth)


# Sequences (CTC) -------------------------------------------------------------

def configure_CTC_v1(
    *,
    normalize: bool = True,
    blank: int = 0,
    zero_infinity: bool = False,
    names: Optional[List[str]] = None,
    from_logits: bool = False,
) -> CTC:
    return CTC(
        normalize=normalize, blank=blank, zero_infinity=zero_infinity, names=names, from_logits=from_logits
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
) -> WeightedSum:
    return WeightedSum(losses=losses, weights=weights, normalize=normalize)
