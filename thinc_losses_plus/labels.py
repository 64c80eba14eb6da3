"""The label layer: names, missing values, negative labels and class weights.

Every family that reads labels (categorical, focal, sequence, sigmoid,
margin, CTC) goes through this module, so each rule is written once:

* ``names``: strings, no duplicates; ``None`` and ``[]`` mean no names.
* ``missing_value``: a label whose rows are masked. It is compared in the
  truths' own type: an int masks integer labels, a str masks string labels
  (it may be one of the ``names``: Thinc's v4 design masks rows labelled
  ``"A"`` with ``names=["A", "B", "C"], missing_value="A"``). Thinc 9.1's
  config validation turns an int ``missing_value`` into its string
  (``-1`` becomes ``"-1"``), so a string that spells an integer also masks
  that integer label and that argmax of dense truths. A string that
  spells no integer can never match integer labels: refused, not ignored.
* ``neg_prefix``: ``neg_prefix + X`` means "not X".
* ``class_weights``: a list indexed by class, or a dict name -> weight
  (absent names weigh 1.0), checked against the names as soon as they are
  known (at construction, or when a spaCy component binds its labels); or
  ``"balanced"``, counted from the training corpus and bound before the
  first call (a spaCy component does it in ``initialize``).

:class:`LabelScheme` holds these settings for one calculator and converts
truths (an int array, a list of ints, a list of ``str`` or of any ``str``
subclass such as ``numpy.str_``) into :class:`SparseLabels`.
"""
import copy
import math
import operator
from numbers import Integral, Real
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy

from ._checks import call_error, check_float, setting_error
from ._inputs import is_array

Label = Union[int, str]
ClassWeights = Optional[Union[Dict[str, float], Sequence[float], str]]
#: ``class_weights = "balanced"``: weights counted from the training corpus
#: (see :mod:`thinc_losses_plus.class_weights`), bound with ``with_class_weights``.
BALANCED = "balanced"


class SparseLabels(NamedTuple):
    indices: Any  # (N,) int64 array on the guesses' device; masked rows hold 0
    missing: Any  # (N,) bool array of rows to mask entirely, or None if none
    negative: Any  # (N,) bool array of rows labelled "not indices[i]", or None


# Settings -------------------------------------------------------------------


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
    names = [str(n) for n in names]
    seen: set = set()
    duplicates = sorted({n for n in names if n in seen or seen.add(n)})
    if duplicates:
        raise setting_error(name, "names", f"contains duplicate names: {duplicates}")
    return names


def check_missing_value(name: str, missing_value: Any, *, allow_str: bool = True) -> Optional[Label]:
    """An int or a str label (``allow_str``), or None."""
    if missing_value is None:
        return None
    if isinstance(missing_value, bool) or not isinstance(missing_value, (int, str)):
        kind = "an int or a str" if allow_str else "an int"
        raise setting_error(name, "missing_value", f"must be {kind} or None, got {missing_value!r}", TypeError)
    # Without str labels, only an int or the string of one (Thinc 9.1's config coercion) can match.
    if not allow_str and missing_int(missing_value) is None:
        raise setting_error(name, "missing_value", f"must be an int (a column index), got {missing_value!r}", TypeError)
    if isinstance(missing_value, str):
        return str(missing_value)
    return int(missing_value)


def missing_int(value: Any) -> Optional[int]:
    """The integer a ``missing_value`` stands for: an int, or a string spelling one ("-1")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip()) if value.strip() else None
        except ValueError:
            return None
    return None


def check_missing_target(name: str, value: Any) -> Optional[float]:
    """``missing_value`` of an elementwise (sigmoid) loss: a number outside ``[0, 1]``."""
    if value is None:
        return None
    if isinstance(value, str):  # a config value that a Thinc version turned into a string
        try:
            value = float(value)
        except ValueError:
            raise setting_error(name, "missing_value", f"must be a number outside [0, 1], got {value!r}", TypeError) from None
    value = check_float(name, "missing_value", value, low=-math.inf, high=math.inf, low_open=True, high_open=True)
    if 0.0 <= value <= 1.0:
        raise setting_error(name, "missing_value", f"must lie outside [0, 1] (it would be a valid target), got {value!r}")
    return value


def check_class_weights(name: str, class_weights: ClassWeights, names: Optional[Sequence[str]] = None):
    """Validate ``class_weights``: a list indexed by class, or a dict name -> weight.

    Weights must be finite and non-negative. A dict's keys are checked
    against ``names`` as soon as they are known.
    """
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        if class_weights != BALANCED:
            raise setting_error(
                name, "class_weights", f"as a string must be {BALANCED!r} (counted from the corpus), got {class_weights!r}"
            )
        return BALANCED
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
        return {str(k): float(v) for k, v in class_weights.items()}
    return [float(v) for v in values]


def check_weight_names(name: str, class_weights: ClassWeights, names: Optional[Sequence[str]]) -> None:
    if isinstance(class_weights, dict) and names is not None:
        unknown = sorted(set(class_weights) - set(names))
        if unknown:
            raise setting_error(name, "class_weights", f"names unknown labels: {unknown}")


def class_weight_list(name: str, class_weights: ClassWeights, names: Optional[Sequence[str]], n_classes: int) -> List[float]:
    """One weight per column at call time (absent names of a dict weigh 1.0)."""
    if class_weights == BALANCED:
        raise call_error(
            name,
            "class_weights",
            "is 'balanced', which must be counted from the training corpus before the first call: a spaCy "
            "component does it in initialize; in Thinc, pass thinc_losses_plus.class_weights.balanced_class_weights(truths) "
            "to with_class_weights",
        )
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


# The scheme -------------------------------------------------------------------


class LabelScheme:
    """The label settings of one calculator, and the conversion of its truths.

    ``calculator`` is the name every error carries: the calculator the user
    configured (a sequence loss passes its own name).
    """

    def __init__(
        self,
        calculator: str,
        *,
        names: Optional[Sequence[str]] = None,
        missing_value: Optional[Label] = None,
        neg_prefix: Optional[str] = None,
        class_weights: ClassWeights = None,
        allow_str_missing: bool = True,
    ):
        self.calculator = calculator
        self.names = check_names(calculator, names)
        self.missing_value = check_missing_value(calculator, missing_value, allow_str=allow_str_missing)
        if neg_prefix is not None and (not isinstance(neg_prefix, str) or not neg_prefix):
            raise setting_error(calculator, "neg_prefix", f"must be a non-empty str or None, got {neg_prefix!r}", TypeError)
        self.neg_prefix = None if neg_prefix is None else str(neg_prefix)
        self.class_weights = check_class_weights(calculator, class_weights, self.names)
        self.name_to_i: Dict[str, int] = {n: i for i, n in enumerate(self.names or [])}
        self.missing_int = missing_int(self.missing_value)
        self.missing_str = None if self.missing_value is None else str(self.missing_value)

    def with_names(self, names: Optional[Sequence[str]]) -> "LabelScheme":
        """This scheme with ``names`` set (dict class weights are checked against them)."""
        names = check_names(self.calculator, names)
        if self.names is not None and self.names != names:
            raise setting_error(self.calculator, "names", f"were configured as {self.names}, not the component's {names}")
        check_weight_names(self.calculator, self.class_weights, names)
        clone = copy.copy(self)
        clone.names = names
        clone.name_to_i = {n: i for i, n in enumerate(names or [])}
        return clone

    def with_class_weights(self, class_weights: ClassWeights) -> "LabelScheme":
        """This scheme with ``class_weights`` set (e.g. counted ``"balanced"`` weights)."""
        clone = copy.copy(self)
        clone.class_weights = check_class_weights(self.calculator, class_weights, self.names)
        return clone

    # Columns and weights --------------------------------------------------------

    def check_n_classes(self, n_classes: int) -> None:
        if self.names is not None and len(self.names) != n_classes:
            raise call_error(
                self.calculator, "names", f"has {len(self.names)} entries but the guesses have {n_classes} columns"
            )

    def class_weight_array(self, n_classes: int, xp, dtype):
        """The class weights as a ``(1, C)`` array, or None."""
        if self.class_weights is None:
            return None
        per_class = class_weight_list(self.calculator, self.class_weights, self.names, n_classes)
        return xp.asarray(per_class, dtype=dtype).reshape(1, n_classes)

    # Dense truths ---------------------------------------------------------------

    def dense_missing(self, truths, xp):
        """Rows of dense truths whose argmax equals ``missing_value`` (None if none can)."""
        if self.missing_value is None or not truths.size:
            return None
        if self.missing_int is None:
            raise call_error(
                self.calculator, "missing_value",
                f"is {self.missing_value!r}, which can never equal the argmax (a column index) of dense truths",
            )
        return xp.argmax(truths, axis=1) == self.missing_int

    # Sparse truths ----------------------------------------------------------------

    def to_indices(self, truths, n_rows: int, n_classes: int, xp, checks=None) -> SparseLabels:
        """Convert truths (int array, list of int, list of str) to :class:`SparseLabels`.

        The range of integer labels is checked on the device: with ``checks``
        (an :class:`~thinc_losses_plus._inputs.Checks`) the check joins the
        call's one transfer, and ``checks.run()`` must precede any use of
        the indices.
        """
        if is_array(truths):
            return self._from_array(truths, n_rows, n_classes, xp, checks)
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
        if self.names is not None and isinstance(truths[0], str) and self.missing_str not in self.name_to_i:
            # Fast path: every label is a name (one dictionary lookup per label).
            # Anything else (missing or negative labels, unknown strings, other
            # types) takes the checked path. str subclasses hash as their text.
            try:
                indices = self.lookup_names(truths)
            except (KeyError, TypeError):
                pass
            else:
                return SparseLabels(xp.asarray(indices), None, None)
        kinds = set(map(type, truths))
        if type(None) in kinds:
            return self._from_list_with_none(truths, n_classes, xp)
        if all(issubclass(k, str) for k in kinds):
            return self._from_strings(truths, n_classes, xp)
        if all(issubclass(k, Integral) and not issubclass(k, (bool, numpy.bool_)) for k in kinds):
            return self._from_array(numpy.asarray(truths, dtype="int64"), n_rows, n_classes, xp, checks)
        if any(issubclass(k, str) for k in kinds):
            raise call_error(self.calculator, "truths", "mixes strings with other types", TypeError)
        bad = next(k for k in kinds if not issubclass(k, Integral) or issubclass(k, (bool, numpy.bool_)))
        raise call_error(
            self.calculator, "truths", f"must be class indices (int) or names (str), got {bad.__name__}", TypeError
        )

    def lookup_names(self, truths: Sequence[str], *, small: bool = False) -> numpy.ndarray:
        """The columns of a list of names, one dictionary lookup per label, as a new host array:
        int64, or with ``small`` uint8 where there are at most 256 names (int64 otherwise).

        Raises ``KeyError`` (``TypeError``) for a label that is not a name (not hashable):
        callers take their checked path then. ``str`` subclasses hash as their text.
        """
        if len(truths) < 2:  # itemgetter returns a tuple for two keys or more
            return numpy.asarray([self.name_to_i[label] for label in truths], dtype="uint8" if small else "int64")
        # Each name maps to a code its column can be read back from, and one join in C
        # builds the array: no Python int is converted per label. Up to 256 names the
        # code is the character chr(column) (one byte a label), else its 8 int64 bytes.
        cached = getattr(self, "_name_codes", None)
        if cached is None or cached[0] is not self.name_to_i:
            chars = {name: chr(i) for name, i in self.name_to_i.items()} if len(self.name_to_i) <= 256 else None
            words = {name: numpy.int64(i).tobytes() for name, i in self.name_to_i.items()}
            cached = self._name_codes = (self.name_to_i, chars, words)
        chars, words = cached[1], cached[2]
        if chars is not None:
            codes = numpy.frombuffer("".join(operator.itemgetter(*truths)(chars)).encode("latin-1"), dtype=numpy.uint8)
            return codes if small else codes.astype(numpy.int64)
        return numpy.frombuffer(bytearray().join(operator.itemgetter(*truths)(words)), dtype=numpy.int64)

    def sequence_indices(self, i: int, seq, n_classes: int) -> numpy.ndarray:
        """One label sequence (CTC) as a host int64 array (labels are checked by the caller)."""
        where = f"sequence {i}"
        if is_array(seq):
            if seq.dtype.kind not in "iu":
                raise call_error(self.calculator, "truths", f"{where} must hold integer labels, got dtype {seq.dtype}", TypeError)
            if seq.ndim != 1:
                raise call_error(self.calculator, "truths", f"{where} must be 1-dimensional, got shape {tuple(seq.shape)}")
            host = numpy.asarray(seq.get() if hasattr(seq, "get") else seq, dtype="int64")
            return host
        if isinstance(seq, str):
            hint = f"for characters use list({seq[:10]!r})"
            raise call_error(self.calculator, "truths", f"{where} is a str, not a list of labels ({hint})", TypeError)
        if not isinstance(seq, (list, tuple)):
            kind = type(seq).__name__
            raise call_error(self.calculator, "truths", f"{where} must be an int array or a list of labels, got {kind}", TypeError)
        if not seq:
            return numpy.zeros((0,), dtype="int64")
        kinds = set(map(type, seq))
        if all(issubclass(k, str) for k in kinds):
            if self.names is None:
                raise call_error(
                    self.calculator, "truths", f"{where} holds strings but no 'names' were given to map them to columns"
                )
            unknown = [label for label in seq if label not in self.name_to_i]
            if unknown:
                raise call_error(self.calculator, "truths", f"{where} contains unknown label {str(unknown[0])!r}")
            return numpy.asarray([self.name_to_i[label] for label in seq], dtype="int64")
        if all(issubclass(k, Integral) and not issubclass(k, (bool, numpy.bool_)) for k in kinds):
            return numpy.asarray(seq, dtype="int64")
        if any(issubclass(k, str) for k in kinds):
            raise call_error(self.calculator, "truths", f"{where} mixes strings with other types", TypeError)
        bad = next(k for k in kinds if not issubclass(k, Integral) or issubclass(k, (bool, numpy.bool_)))
        raise call_error(self.calculator, "truths", f"{where} must hold int labels or names (str), got {bad.__name__}", TypeError)

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
            raise call_error(self.calculator, "truths", f"has {n_truths} labels but the guesses have {n_rows} rows")

    def _from_array(self, labels, n_rows: int, n_classes: int, xp, checks=None) -> SparseLabels:
        if labels.dtype.kind not in "iu":
            if labels.dtype.kind in "US":
                return self.to_indices(labels.tolist(), n_rows, n_classes, xp)
            raise call_error(
                self.calculator, "truths", f"must hold integer class indices, got dtype {labels.dtype}", TypeError
            )
        if labels.ndim != 1:
            raise call_error(self.calculator, "truths", f"must be 1-dimensional, got shape {tuple(labels.shape)}")
        self._check_length(labels.shape[0], n_rows)
        if self.missing_value is not None and self.missing_int is None:
            raise call_error(
                self.calculator, "missing_value",
                f"is {self.missing_value!r}, which can never equal an integer label (the truths are class indices)",
            )
        labels = xp.asarray(labels)
        if not labels.size:
            return SparseLabels(labels.astype("int64"), None, None)
        missing = None
        if self.missing_int is not None:
            missing = labels == self.missing_int
            bad = (((labels < 0) | (labels >= n_classes)) & ~missing).any()
        else:
            bad = (labels.min() < 0) | (labels.max() >= n_classes)

        def describe() -> str:
            out = (labels < 0) | (labels >= n_classes)
            if missing is not None:
                out &= ~missing
            first = int(labels[xp.argmax(out)])
            return f"contains label {first}, outside [0, {n_classes}) for {n_classes} classes"

        if checks is not None:
            checks.fail_if(bad, "truths", describe)  # raised before any label is used
        elif bool(bad):
            raise call_error(self.calculator, "truths", describe())
        if missing is not None:
            labels = xp.where(missing, 0, labels)
        return SparseLabels(labels.astype("int64", copy=False), missing, None)

    def _from_strings(self, truths: Sequence[str], n_classes: int, xp) -> SparseLabels:
        if self.names is None and any(label != self.missing_str for label in truths):
            raise call_error(
                self.calculator,
                "truths",
                "are strings but no 'names' were given to map them to columns, "
                f"e.g. {self.calculator}(names=['dog', 'cat'])",
            )
        lookup = self.name_to_i.get
        missing_str = self.missing_str
        indices = [-1 if label == missing_str else lookup(label, -1) for label in truths]
        missing: List[int] = []
        negative: List[int] = []
        if -1 in indices:
            prefix = self.neg_prefix
            for i, index in enumerate(indices):
                if index != -1:
                    continue
                label = truths[i]
                if label == missing_str:
                    missing.append(i)
                    indices[i] = 0
                elif prefix and label.startswith(prefix) and label[len(prefix):] in self.name_to_i:
                    negative.append(i)
                    indices[i] = self.name_to_i[label[len(prefix):]]
                else:
                    raise call_error(self.calculator, "truths", f"contains unknown label {str(label)!r}")
        n = len(truths)
        return SparseLabels(
            xp.asarray(indices, dtype="int64"),
            _row_flags(missing, n, xp),
            _row_flags(negative, n, xp),
        )


class NamedColumns:
    """Mixin for calculators whose columns live in a :class:`LabelScheme` (``self.labels``).

    ``names`` and ``class_weights`` stay readable as attributes, read from the scheme.
    """

    name: str
    labels: LabelScheme

    @property
    def names(self) -> Optional[List[str]]:
        return self.labels.names

    @property
    def class_weights(self):
        return self.labels.class_weights

    def with_names(self, names: Sequence[str]):
        """A copy of this calculator with ``names`` set (for spaCy components).

        Raises ValueError if other names were configured already, or if a
        dict of ``class_weights`` names a label that is not among them.
        """
        clone = copy.copy(self)
        clone.labels = self.labels.with_names(names)
        return clone

    def with_class_weights(self, class_weights: ClassWeights):
        """A copy of this calculator with ``class_weights`` set, e.g. the counted
        weights that replace ``"balanced"`` (a dict name -> weight, or a list)."""
        clone = copy.copy(self)
        clone.labels = self.labels.with_class_weights(class_weights)
        return clone


def _row_flags(rows: List[int], n: int, xp):
    if not rows:
        return None
    flags = numpy.zeros((n,), dtype=bool)
    flags[rows] = True
    return xp.asarray(flags)


class LabelledColumns(NamedColumns):
    """:class:`NamedColumns` whose truths are labels: ``missing_value`` and ``neg_prefix`` too."""

    @property
    def missing_value(self):
        return self.labels.missing_value

    @property
    def neg_prefix(self) -> Optional[str]:
        return self.labels.neg_prefix
