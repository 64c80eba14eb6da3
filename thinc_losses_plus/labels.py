"""Truths to class indices: names, missing values and negative labels.

:class:`LabelScheme` holds the label settings that Thinc's categorical losses
share (``names``, ``missing_value``, ``neg_prefix``) and converts truths given
as an integer array, a list of ints or a list of strings into
:class:`SparseLabels`: one class index per row plus the rows to mask.
"""
import copy
from numbers import Integral, Real
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy

from ._checks import call_error, is_array, setting_error

Label = Union[int, str]
ClassWeights = Optional[Union[Dict[str, float], Sequence[float]]]


class SparseLabels(NamedTuple):
    indices: Any  # (N,) int64 array on the guesses' device; masked rows hold 0
    missing: Any  # (N,) bool array of rows to mask entirely, or None if none
    negative: Any  # (N,) bool array of rows labelled "not indices[i]", or None


def check_names(name: str, names: Optional[Sequence[str]]) -> Optional[List[str]]:
    """Validate ``names``: strings, no duplicates. ``None`` and ``[]`` mean no names."""
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise setting_error(name, "names", f"must be a list of strings, got {names!r}", TypeError)
    names = list(names)
    if not names:
        return None
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise setting_error(name, "names", f"must contain only strings, got {bad[0]!r}", TypeError)
    seen = set()
    duplicates = sorted({n for n in names if n in seen or seen.add(n)})
    if duplicates:
        raise setting_error(name, "names", f"contains duplicate names: {duplicates}")
    return names


def check_missing_value(name: str, missing_value: Any, *, allow_str: bool = True) -> Optional[Label]:
    allowed = (int, str) if allow_str else (int,)
    if missing_value is None:
        return None
    if isinstance(missing_value, bool) or not isinstance(missing_value, allowed):
        kind = "an int or a str" if allow_str else "an int"
        raise setting_error(name, "missing_value", f"must be {kind} or None, got {missing_value!r}", TypeError)
    return missing_value


def check_class_weights(name: str, class_weights: ClassWeights, names: Optional[Sequence[str]] = None):
    """Validate ``class_weights``: a list indexed by class, or a dict name -> weight.

    Weights must be finite and non-negative. A dict's keys are checked
    against ``names`` as soon as they are known (here, or when a spaCy
    component supplies its labels through ``with_names``).
    """
    if class_weights is None:
        return None
    if isinstance(class_weights, dict):
        if not all(isinstance(k, str) for k in class_weights):
            raise setting_error(name, "class_weights", "as a dict must map label names (str) to weights", TypeError)
        values = list(class_weights.values())
    elif is_array(class_weights) or isinstance(class_weights, (list, tuple)):
        values = list(class_weights.tolist() if is_array(class_weights) else class_weights)
    else:
        raise setting_error(
            name, "class_weights", f"must be a dict or a list of numbers, got {type(class_weights).__name__}", TypeError
        )
    if not values:
        raise setting_error(name, "class_weights", "must not be empty (one weight per class)")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, Real):
            raise setting_error(name, "class_weights", f"must hold numbers, got {v!r}", TypeError)
        if not (0 <= v < float("inf")):
            raise setting_error(name, "class_weights", f"must be finite and non-negative, got {v!r}")
    if isinstance(class_weights, dict):
        check_weight_names(name, class_weights, names)
        return {k: float(v) for k, v in class_weights.items()}
    return [float(v) for v in values]


def check_weight_names(name: str, class_weights: ClassWeights, names: Optional[Sequence[str]]) -> None:
    if isinstance(class_weights, dict) and names is not None:
        unknown = sorted(set(class_weights) - set(names))
        if unknown:
            raise setting_error(name, "class_weights", f"names unknown labels: {unknown}")


def class_weight_list(name: str, class_weights: ClassWeights, names: Optional[Sequence[str]], n_classes: int) -> List[float]:
    """One weight per column at call time (absent names of a dict weigh 1.0)."""
    if isinstance(class_weights, dict):
        if names is None:
            raise call_error(
                name,
                "class_weights",
                "is a dict, which needs 'names' to map it to columns (set them, or let a spaCy component supply its labels)",
            )
        return [class_weights.get(label, 1.0) for label in names]
    if len(class_weights) != n_classes:
        raise call_error(name, "class_weights", f"has {len(class_weights)} entries but the guesses have {n_classes} columns")
    return list(class_weights)


class NamedColumns:
    """Mixin for calculators with optional column ``names`` (and dict ``class_weights``)."""

    name: str
    names: Optional[List[str]]
    class_weights: ClassWeights

    def with_names(self, names: Sequence[str]):
        """A copy of this calculator with ``names`` set (for spaCy components).

        Raises ValueError if other names were configured already, or if a
        dict of ``class_weights`` names a label that is not among them.
        """
        names = check_names(self.name, names)
        if self.names is not None and self.names != names:
            raise setting_error(self.name, "names", f"were configured as {self.names}, not the component's {names}")
        check_weight_names(self.name, self.class_weights, names)
        clone = copy.copy(self)
        clone._set_names(names)
        return clone

    def _set_names(self, names: Optional[List[str]]) -> None:
        self.names = names

    def _check_columns(self, n_columns: int) -> None:
        if self.names is not None and len(self.names) != n_columns:
            raise call_error(
                self.name, "names", f"has {len(self.names)} entries but the guesses have {n_columns} columns"
            )


class LabelScheme:
    """Label settings of a sparse categorical loss and the conversion of truths."""

    def __init__(
        self,
        calculator: str,
        *,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Label] = None,
        neg_prefix: Optional[str] = None,
    ):
        self.calculator = calculator
        self.names = check_names(calculator, names)
        self.missing_value = check_missing_value(calculator, missing_value)
        if neg_prefix is not None and (not isinstance(neg_prefix, str) or not neg_prefix):
            raise setting_error(calculator, "neg_prefix", f"must be a non-empty str or None, got {neg_prefix!r}", TypeError)
        self.neg_prefix = neg_prefix
        self.name_to_i: Dict[str, int] = {n: i for i, n in enumerate(self.names or [])}
        # missing_value is compared in the truths' own type. Under Thinc 9.1
        # (confection 0.1) config validation turns an int missing_value into
        # its string (typing caches Union[int, str] as Thinc's Union[str, int]),
        # so an integer string also masks integer labels.
        self.missing_int = _as_int(self.missing_value)
        self.missing_str = None if self.missing_value is None else str(self.missing_value)
        if self.missing_str is not None and self.missing_str in self.name_to_i:
            raise setting_error(
                calculator, "missing_value", f"{self.missing_value!r} is also one of the 'names'"
            )

    def check_n_classes(self, n_classes: int) -> None:
        if self.names is not None and len(self.names) != n_classes:
            raise call_error(
                self.calculator,
                "names",
                f"has {len(self.names)} entries but the guesses have {n_classes} columns",
            )

    def to_indices(self, truths, n_rows: int, n_classes: int, xp) -> SparseLabels:
        """Convert truths (int array, list of int, list of str) to :class:`SparseLabels`."""
        if is_array(truths):
            return self._from_array(truths, n_rows, n_classes, xp)
        if not isinstance(truths, (list, tuple)):
            raise call_error(
                self.calculator,
                "truths",
                f"must be an int array, a list of ints or a list of strings, got {type(truths).__name__}",
                TypeError,
            )
        self._check_length(len(truths), n_rows)
        if not truths:
            return SparseLabels(xp.zeros((0,), dtype="int64"), None, None)
        if self.names is not None and isinstance(truths[0], str):
            # Fast path: every label is a name. Anything else (missing or
            # negative labels, unknown strings, other types) takes the checked path.
            try:
                indices = numpy.fromiter(map(self.name_to_i.__getitem__, truths), dtype="int64", count=len(truths))
            except (KeyError, TypeError):
                pass
            else:
                return SparseLabels(xp.asarray(indices), None, None)
        kinds = set(map(type, truths))
        if type(None) in kinds:
            return self._from_list_with_none(truths, n_classes, xp)
        if kinds == {str}:
            return self._from_strings(truths, n_classes, xp)
        if all(issubclass(k, Integral) and not issubclass(k, (bool, numpy.bool_)) for k in kinds):
            return self._from_array(numpy.asarray(truths, dtype="int64"), n_rows, n_classes, xp)
        if any(issubclass(k, str) for k in kinds):
            raise call_error(self.calculator, "truths", "mixes strings with other types", TypeError)
        bad = next(k for k in kinds if not issubclass(k, Integral) or issubclass(k, (bool, numpy.bool_)))
        raise call_error(
            self.calculator, "truths", f"must be class indices (int) or names (str), got {bad.__name__}", TypeError
        )

    def _from_list_with_none(self, truths, n_classes: int, xp) -> SparseLabels:
        """``None`` labels are missing when ``missing_value`` is None (as in Thinc v3,
        and as spaCy's tagger, senter and morphologizer pass unannotated tokens)."""
        if self.missing_value is not None:
            raise call_error(
                self.calculator, "truths", f"contains None but 'missing_value' is {self.missing_value!r}", TypeError
            )
        present = [i for i, label in enumerate(truths) if label is not None]
        n = len(truths)
        indices = numpy.zeros((n,), dtype="int64")
        missing = numpy.ones((n,), dtype=bool)
        negative = None
        if present:
            known = self.to_indices([truths[i] for i in present], len(present), n_classes, numpy)
            where = numpy.asarray(present, dtype="int64")
            indices[where] = known.indices
            missing[where] = False if known.missing is None else known.missing
            if known.negative is not None:
                negative = numpy.zeros((n,), dtype=bool)
                negative[where] = known.negative
                negative = xp.asarray(negative)
        return SparseLabels(xp.asarray(indices), xp.asarray(missing), negative)

    def _check_length(self, n_truths: int, n_rows: int) -> None:
        if n_truths != n_rows:
            raise call_error(
                self.calculator, "truths", f"has {n_truths} labels but the guesses have {n_rows} rows"
            )

    def _from_array(self, labels, n_rows: int, n_classes: int, xp) -> SparseLabels:
        if labels.dtype.kind not in "iu":
            raise call_error(
                self.calculator, "truths", f"must hold integer class indices, got dtype {labels.dtype}", TypeError
            )
        if labels.ndim != 1:
            raise call_error(self.calculator, "truths", f"must be 1-dimensional, got shape {tuple(labels.shape)}")
        self._check_length(labels.shape[0], n_rows)
        labels = xp.asarray(labels)
        missing_value = self.missing_int
        missing = None
        if missing_value is not None:
            missing = labels == missing_value
            bad = ((labels < 0) | (labels >= n_classes)) & ~missing
        else:
            bad = (labels < 0) | (labels >= n_classes)
        if labels.size and bool(bad.any()):
            first = int(labels[xp.argmax(bad)])
            raise call_error(
                self.calculator, "truths", f"contains label {first}, outside [0, {n_classes}) for {n_classes} classes"
            )
        if missing is not None:
            if bool(missing.any()):
                labels = xp.where(missing, 0, labels)
            else:
                missing = None
        return SparseLabels(labels.astype("int64", copy=False), missing, None)

    def _from_strings(self, truths: Sequence[str], n_classes: int, xp) -> SparseLabels:
        if self.names is None:
            raise call_error(
                self.calculator,
                "truths",
                "are strings but no 'names' were given to map them to columns, "
                f"e.g. {self.calculator}(names=['dog', 'cat'])",
            )
        lookup = self.name_to_i.get
        indices = [lookup(label, -1) for label in truths]
        missing: List[int] = []
        negative: List[int] = []
        if -1 in indices:
            prefix = self.neg_prefix
            for i, index in enumerate(indices):
                if index != -1:
                    continue
                label = truths[i]
                if label == self.missing_str:
                    missing.append(i)
                    indices[i] = 0
                elif prefix and label.startswith(prefix) and label[len(prefix):] in self.name_to_i:
                    negative.append(i)
                    indices[i] = self.name_to_i[label[len(prefix):]]
                else:
                    raise call_error(self.calculator, "truths", f"contains unknown label {label!r}")
        n = len(truths)
        return SparseLabels(
            xp.asarray(indices, dtype="int64"),
            _row_flags(missing, n, xp),
            _row_flags(negative, n, xp),
        )


def _as_int(value) -> Optional[int]:
    """An int missing_value, or the integer a string spells ("-1"), else None."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _row_flags(rows: List[int], n: int, xp):
    if not rows:
        return None
    flags = numpy.zeros((n,), dtype=bool)
    flags[rows] = True
    return xp.asarray(flags)
