"""Loss calculators for Thinc and spaCy.

Nothing is registered at import: the calculators reach Thinc's (and spaCy's)
``registry.losses`` through the ``thinc_losses`` entry points declared in
``setup.cfg``, which point to :mod:`thinc_losses_plus.registrations`.
"""
from ._core import LossCalculator
from .categorical import CategoricalCrossentropy
from .categorical_focal import CategoricalFocalCrossentropy
from .distillation import KLDivergence
from .sequence import SequenceCategoricalCrossentropy
from .categorical import SparseCategoricalCrossentropy
# binary (sigmoid family)
from .binary import BinaryCrossentropy
from .binary import BinaryFocalCrossentropy
from .margin import Hinge
from .margin import LogisticLoss
from .margin import MultiMargin
from .margin import SquaredHinge
# regression
from .likelihood import GaussianNLL
from .likelihood import PoissonNLL
from .regression import Huber
from .regression import L1Distance
from .regression import L2Distance
from .regression import LogCosh
from .regression import SmoothL1
# embedding
from .embedding import CosineDistance
from .embedding import CosineEmbedding
from .embedding import TripletMargin
from .embedding import MaximumMeanDiscrepancy
# ctc
from .ctc import CTC
# partial labels
from .transition import PartialLabelCrossentropy
# imbalance and noisy labels
from .imbalance import AsymmetricLoss
from .imbalance import Dice
from .imbalance import GeneralizedCrossentropy
from .imbalance import Tversky
# combine
from .combine import WeightedSum

from .about import __version__

__all__ = [
    "LossCalculator",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "KLDivergence",
    "SequenceCategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    # binary (sigmoid family)
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "Hinge",
    "LogisticLoss",
    "MultiMargin",
    "SquaredHinge",
    # regression
    "GaussianNLL",
    "PoissonNLL",
    "Huber",
    "L1Distance",
    "L2Distance",
    "LogCosh",
    "SmoothL1",
    # embedding
    "CosineDistance",
    "CosineEmbedding",
    "TripletMargin",
    "MaximumMeanDiscrepancy",
    # ctc
    "CTC",
    # partial labels
    "PartialLabelCrossentropy",
    # imbalance and noisy labels
    "AsymmetricLoss",
    "Dice",
    "GeneralizedCrossentropy",
    "Tversky",
    # combine
    "WeightedSum",
]
