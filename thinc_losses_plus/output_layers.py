"""Hand a loss's gradient to a model's output layer correctly.

A loss calculator returns its gradient with respect to something definite
(SPEC section 3): the softmax family given probabilities returns it with
respect to the **logits** behind them (``p - target``); every other
calculator (and the softmax family with ``from_logits=True``) returns it with
respect to its **guesses**. Thinc's output layers expect different things in
their backward pass:

=======================  ===============================================
output layer             what ``backprop(dY)`` takes ``dY`` to be
=======================  ===============================================
``Softmax`` (v1, v2)     dL/dlogits: its backward skips the softmax Jacobian
``softmax_activation``   dL/dp: its backward applies the softmax Jacobian
``Logistic``, ``Sigmoid``,
``sigmoid_activation``   dL/dp: their backward applies sigmoid'
anything else            dL/d(output): the output is the loss's guesses
=======================  ===============================================

:func:`adapt_gradient` converts the loss's gradient into the ``dY`` the
layer needs, so that the gradient reaching the layer's *input* is the exact
gradient of the configured loss; :func:`pairing_problem` names the pairs
that cannot work (a softmax-family loss on sigmoid outputs, ``from_logits``
on a layer that outputs probabilities). This module needs Thinc only.
"""

from typing import Optional

from thinc.api import Model
from thinc.backends import get_array_ops

SOFTMAX = "Softmax"
SOFTMAX_ACTIVATION = "softmax_activation"
LOGISTIC = "Logistic"
OTHER = "other"

#: Loss gradient conventions.
WRT_LOGITS = "logits"  # softmax family given probabilities: d/dlogits
WRT_GUESSES = "guesses"  # everything else: d/dguesses

_KINDS = {
    "softmax": SOFTMAX,
    "softmax_activation": SOFTMAX_ACTIVATION,
    "logistic": LOGISTIC,
    "sigmoid": LOGISTIC,
    "sigmoid_activation": LOGISTIC,
}
# One-layer wrappers whose output is their layer's output (possibly moved
# between devices or re-shaped into a list/padded/ragged container). Thinc
# names them "<wrapper>(<layer name>)".
_WRAPPERS = ("with_array", "with_cpu", "with_list", "with_padded", "with_ragged", "with_flatten", "resizable")
# Layers after the output layer that only re-shape its output (spaCy's span
# finder concatenates per-doc outputs with its "Flattener"): look before them.
_RESHAPERS = ("Flattener",)


def find_output_layer(model: Model) -> Model:
    """The layer that produces ``model``'s output: the last of each chain,
    looking through one-layer wrappers such as ``with_array`` and ``with_cpu``.

    Layers are recognised by their public ``name``, as Thinc builds it: a
    chain is named ``"a>>b"`` after its layers, a wrapper ``"with_array(a)"``.
    """
    layer = model
    while True:
        name = layer.name
        sublayers = layer.layers
        if name in _KINDS:
            return layer
        if len(sublayers) > 1 and name == ">>".join(sub.name for sub in sublayers):
            last = len(sublayers) - 1
            while last > 0 and sublayers[last].name in _RESHAPERS:
                last -= 1
            layer = sublayers[last]
        elif len(sublayers) == 1 and any(name == f"{wrapper}({sublayers[0].name})" for wrapper in _WRAPPERS):
            layer = sublayers[0]
        else:
            return layer


def output_kind(model: Model) -> str:
    """``SOFTMAX``, ``SOFTMAX_ACTIVATION``, ``LOGISTIC`` or ``OTHER`` for a model's output layer."""
    return _KINDS.get(find_output_layer(model).name, OTHER)


def is_softmax_family(loss) -> bool:
    """Whether ``loss`` scores softmax outputs (Thinc's own categorical losses included)."""
    from thinc import loss as thinc_loss

    thinc_softmax = (thinc_loss.CategoricalCrossentropy, thinc_loss.SequenceCategoricalCrossentropy)
    return bool(getattr(loss, "softmax_family", False)) or isinstance(loss, thinc_softmax)


def gradient_target(loss) -> str:
    """``WRT_LOGITS`` for the softmax family given probabilities, else ``WRT_GUESSES``."""
    if is_softmax_family(loss) and not (getattr(loss, "from_logits", False) or getattr(loss, "from_log_probs", False)):
        return WRT_LOGITS
    return WRT_GUESSES


def pairing_problem(loss, kind: str) -> Optional[str]:
    """Why ``loss`` cannot train a model whose output layer is ``kind`` (None if it can)."""
    if getattr(loss, "from_logits", False) and kind != OTHER:
        return (
            f"has from_logits = true, but the model's output layer ({kind}) outputs probabilities; "
            "set from_logits = false, or use an architecture whose output layer has no activation"
        )
    if getattr(loss, "from_log_probs", False) and kind != OTHER:
        return (
            f"has from_log_probs = true, but the model's output layer ({kind}) outputs probabilities; "
            "set from_log_probs = false"
        )
    if kind == LOGISTIC and is_softmax_family(loss):
        return (
            "scores softmax distributions (each row summing to 1), but the model's output layer "
            "(Logistic) gives one independent sigmoid per label; use a sigmoid-family loss such as "
            "BinaryCrossentropy.v1 or BinaryFocalCrossentropy.v1, or an architecture with "
            "exclusive_classes = true"
        )
    return None


def adapt_gradient(grad, outputs, *, target: str, kind: str):
    """Turn a loss gradient into the ``dY`` the output layer's backprop expects.

    ``grad`` and ``outputs`` are arrays of the same shape, or lists of them
    (one per sequence). ``target`` is the loss's :func:`gradient_target`,
    ``kind`` the layer's :func:`output_kind`. The result makes the gradient
    at the layer's input the exact gradient of the loss.
    """
    if isinstance(grad, (list, tuple)):
        return [adapt_gradient(g, y, target=target, kind=kind) for g, y in zip(grad, outputs)]
    if target == WRT_LOGITS and kind == SOFTMAX_ACTIVATION:
        return logits_grad_to_probs_grad(grad, outputs)
    if target == WRT_GUESSES and kind == SOFTMAX:
        return probs_grad_to_logits_grad(grad, outputs)
    return grad


def probs_grad_to_logits_grad(d_probs, probs):
    """Chain rule through the softmax: ``p * (v - sum(p * v))`` for ``v = dL/dp``."""
    dX = probs * d_probs
    dX -= probs * dX.sum(axis=-1, keepdims=True)
    return dX


def logits_grad_to_probs_grad(d_logits, probs):
    """A ``v`` whose softmax-Jacobian product is ``d_logits``: ``v = d_logits / p``.

    Valid because a loss of the probabilities has ``sum(d_logits) = 0`` per
    row, so ``p * (v - sum(p * v)) = d_logits``. Where ``p`` has underflowed
    (below ``tiny ** 0.8``: 1e-30 in float32) the Jacobian passes nothing
    whatever ``v`` is, and ``v`` is set to 0 rather than overflowing.
    """
    xp = get_array_ops(probs).xp
    eps = float(xp.finfo(probs.dtype).tiny) ** 0.8
    safe = probs > eps
    return xp.where(safe, d_logits / xp.where(safe, probs, 1.0), 0.0).astype(d_logits.dtype, copy=False)
