"""Benchmark harness: every calculator has an entry; results print as a table
and are written to ``docs/benchmarks.md``.

An entry module ``benchmarks/entries/<family>.py`` defines ``ENTRIES``, a list
of :class:`Entry`. Each entry builds its inputs once and returns a dict of
labelled callables timed side by side in the same run (ours, Thinc's own,
PyTorch CPU, a numpy floor...). ``baseline`` names the callable that the
"ratio" column divides by; ``targets`` states, per label, the ratio the SPEC
asks for (``ours_time / label_time <= target``), so the table says whether
each target is met.

Like for like: every side of an entry gets the same inputs (the same label
dtype: an entry that compares label dtypes has one row per dtype), numpy's
BLAS and torch run on one thread (``run.py`` pins them with threadpoolctl),
and ``notes`` says, per label, what that side computes when it is not the
same thing as ours (Thinc v3 computes no cross-entropy and checks no row
sums, for example). :func:`copy_floor` adds one numpy copy of the guesses,
the memory-bound floor (the gradient must be written once).
"""
import gc
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional


@dataclass
class Entry:
    name: str  # the calculator, e.g. "SparseCategoricalCrossentropy.v4"
    case: str  # e.g. "4096x50, int labels"
    setup: Callable[[], Dict[str, Callable[[], object]]]
    ours: str = "ours"
    # label -> maximum allowed ours/label time ratio (e.g. {"thinc v3": 0.1})
    targets: Dict[str, float] = field(default_factory=dict)
    memory: bool = False  # also measure peak extra memory of ours with tracemalloc
    memory_target: Optional[float] = None  # max peak / gradient bytes
    grad_bytes: Optional[Callable[[], int]] = None  # default: the bytes of the gradient ours returns
    # label -> what that side computes (shown beside its row), e.g. {"thinc v3": "gradient only"}
    notes: Dict[str, str] = field(default_factory=dict)
    # label -> what bounds that row where its target is not met (MEMORY for the memory row):
    # listed under the table, and the memory test leaves such a row to the benchmark
    bounds: Dict[str, str] = field(default_factory=dict)


#: The label of an entry's peak-memory row (and its key in ``Entry.bounds``).
MEMORY = "peak memory / gradient bytes"
#: What bounds the 256x10 memory rows of the row-blocked (elementwise) families.
SMALL_BATCH_MEMORY = (
    "A 256x10 float32 gradient is 10 KB, so 1.5x leaves 5 KB, and a call's fixed allocations take about "
    "that before any scratch: the per-example losses (1 KB), the float64 sum of the losses (numpy's 2 KB "
    "casting buffer), the row sums' buffer (1.5 KB) and Python's own objects (about 2 KB). The last row "
    "block's scratch comes on top (0.25x the gradient per slot): fewer bytes need more blocks, each a "
    "Python call per numpy operation (the elementwise losses run 1.2-1.8x slower with a 256- or "
    "512-element floor, and still miss 1.5). Speed at textcat size was kept."
)


COPY_FLOOR = "numpy copy of guesses"


def copy_floor(fns: Dict[str, Callable[[], object]], guesses) -> Dict[str, Callable[[], object]]:
    """Add one numpy copy of ``guesses`` to ``fns`` (the floor every size is compared with)."""
    fns[COPY_FLOOR] = lambda: guesses.copy()
    return fns


def gradient_bytes(result) -> int:
    """The bytes of the gradient(s) in a calculator's ``(grad, loss)`` result."""
    grad = result[0] if isinstance(result, tuple) else result
    if isinstance(grad, (list, tuple)):
        return sum(gradient_bytes((g,)) for g in grad)
    data = getattr(grad, "data", grad)  # Ragged / Padded hold their array in .data
    return int(getattr(data, "nbytes", 0))


def _calibrate(fn: Callable[[], object], min_time: float) -> int:
    """How many calls of ``fn`` take at least ``min_time`` (a power of two; one warm-up call first)."""
    fn()
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - start >= min_time or number >= 1 << 20:
            return number
        number *= 2


def best_times(fns: Dict[str, Callable[[], object]], *, min_time: float = 0.2, repeat: int = 5) -> Dict[str, float]:
    """Best per-call seconds of each callable over ``repeat`` interleaved rounds.

    Each round times every side in turn (``ours``, then each comparison), so a
    burst of load on a shared machine falls on all sides of a row alike rather
    than on whichever side happened to be timed during it.
    """
    numbers = {label: _calibrate(fn, min_time / repeat) for label, fn in fns.items()}
    best = {label: float("inf") for label in fns}
    for _ in range(repeat):
        for label, fn in fns.items():
            number = numbers[label]
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best[label] = min(best[label], (time.perf_counter() - start) / number)
    return best


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes allocated (tracemalloc) while ``fn`` runs, result included."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak
