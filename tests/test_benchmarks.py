"""Every benchmark entry runs (once, untimed): the suite keeps them from rotting.

Timing belongs to ``python benchmarks/run.py``, never to a test.
"""
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from harness import COPY_FLOOR, MEMORY, gradient_bytes, peak_memory  # noqa: E402
from run import load_entries, pin_threads, table  # noqa: E402

from thinc_losses_plus.entry_points import loss_names  # noqa: E402

ENTRIES = load_entries()


def test_every_registered_name_has_a_benchmark_entry():
    missing = sorted(set(loss_names()) - {e.name for e in ENTRIES})
    assert not missing, f"no benchmark entry for {missing}"


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e.name}[{e.case}]" for e in ENTRIES])
def test_entry_runs(entry):
    fns = entry.setup()
    assert entry.ours in fns
    assert set(entry.targets) <= set(fns), "a target names a comparison the entry does not run"
    for fn in fns.values():
        fn()


#: Beyond this many gradient bytes an entry is left to the benchmark (32768x1000: seconds per call).
MEMORY_TEST_BYTES = 1 << 24


def _memory_entries():
    """Entries with a memory target and no stated bound (``Entry.bounds[MEMORY]``), up to 4096x50."""
    for entry in ENTRIES:
        if entry.memory and entry.memory_target is not None and MEMORY not in entry.bounds:
            if "32768x1000" not in entry.case:
                yield entry


@pytest.mark.parametrize("entry", list(_memory_entries()), ids=lambda e: f"{e.name}[{e.case}]")
def test_peak_memory_meets_the_entrys_target(entry):
    """SPEC section 8's memory bound, for every entry that states one: tracemalloc counts
    bytes, not time, so the benchmark's memory rows are a test (the largest size aside)."""
    fns = entry.setup()
    ours = fns[entry.ours]
    grad_bytes = entry.grad_bytes() if entry.grad_bytes else gradient_bytes(ours())
    assert grad_bytes <= MEMORY_TEST_BYTES
    ratio = peak_memory(ours) / grad_bytes
    assert ratio <= entry.memory_target, f"peak memory {ratio:.3f}x the gradient, target {entry.memory_target}"


def test_a_stated_bound_names_a_row_the_entry_has():
    for entry in ENTRIES:
        fns = set(entry.targets) | ({MEMORY} if entry.memory else set())
        assert set(entry.bounds) <= fns, (entry.name, entry.case)


def test_unmet_targets_are_listed_with_their_bounds():
    from run import unmet

    rows = [
        {"name": "A.v1", "case": "8x2", "label": MEMORY, "ratio": 2.0, "target": 1.1, "met": False, "bound": "a lattice"},
        {"name": "B.v1", "case": "8x2", "label": "torch", "ratio": 1.2, "target": 1.0, "met": False, "bound": ""},
        {"name": "C.v1", "case": "8x2", "label": "torch", "ratio": 0.5, "target": 1.0, "met": True, "bound": ""},
    ]
    text = unmet(rows)
    assert "A.v1 [8x2], peak memory / gradient bytes: 2.000 (target <= 1.1). a lattice" in text
    assert "B.v1 [8x2], torch: 1.200 (target <= 1). not explained" in text and "C.v1" not in text


def test_the_run_pins_numpy_and_torch_to_one_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with pin_threads():
        assert all(pool["num_threads"] == 1 for pool in threadpoolctl.threadpool_info())
        torch = pytest.importorskip("torch")
        assert torch.get_num_threads() == 1


def test_sparse_entries_compare_like_with_like():
    sparse = [e for e in ENTRIES if e.name == "SparseCategoricalCrossentropy.v4"]
    cases = {e.case for e in sparse}
    for size in ("256x10", "4096x50", "32768x1000"):  # int32 and int64 rows at every size
        assert {f"{size} int32 labels", f"{size} int64 labels"} <= cases
    for entry in sparse:
        fns = entry.setup() if entry.case.startswith("256x10") else None
        if fns is not None:
            assert COPY_FLOOR in fns, "the copy floor is shown at every size"
        if "thinc v3" in entry.notes:
            assert "no cross-entropy" in entry.notes["thinc v3"]


def test_table_says_what_each_side_computes():
    row = {"name": "A.v1", "case": "8x2", "label": "thinc v3", "computes": "gradient only", "seconds": 1e-3,
           "ratio": 0.5, "target": 1.0, "met": True}
    assert "| thinc v3 | gradient only | 1.000 ms | 0.500 | <= 1 | yes |" in table([row])


# The spaCy overhead benchmark (benchmarks/spacy_overhead.py): its machinery runs, untimed ----------


@pytest.mark.parametrize("base", ["textcat", "ner"])  # get_loss replayed; get_batch_loss summed over an update
def test_spacy_overhead_machinery_runs_one_step(base):
    pytest.importorskip("spacy")
    import spacy_overhead

    case = next(c for c in spacy_overhead.CASES if c.base == base)
    row = spacy_overhead.measure(case, n_docs=12, batch=4, steps=1, rounds=1, min_time=0.0)
    assert row["component"] == f"{base}_with_loss" and row["balanced ratio"] is not None
    assert row["calculator"] > 0 and row["get_loss twin"] > 0 and row["get_loss built-in"] > 0
    text = spacy_overhead.section([row], "a test machine")
    assert text.startswith(spacy_overhead.START) and text.endswith(spacy_overhead.END)
    assert f"| {base}_with_loss" in text


def test_spacy_overhead_section_replaces_its_markers_and_run_py_keeps_it(tmp_path, monkeypatch):
    pytest.importorskip("threadpoolctl")
    import types

    import run
    import spacy_overhead

    bench, doc = tmp_path / "benchmarks", tmp_path / "docs" / "benchmarks.md"
    bench.mkdir()
    doc.parent.mkdir()
    doc.write_text("# Benchmarks\n\nold table\n")
    spacy_overhead.write(f"{spacy_overhead.START}\nfirst\n{spacy_overhead.END}", doc)
    spacy_overhead.write(f"{spacy_overhead.START}\nspaCy rows\n{spacy_overhead.END}", doc)
    assert doc.read_text().count(spacy_overhead.START) == 1 and "first" not in doc.read_text()
    # run.py rewrites the file (here with no entries) and keeps the marked section
    monkeypatch.setattr(run, "HERE", bench)
    monkeypatch.setattr(run, "load_entries", lambda: [])
    monkeypatch.setitem(sys.modules, "chart", types.SimpleNamespace(draw=lambda rows, path: None))
    run.main([])
    text = doc.read_text()
    assert "old table" not in text and "Written by `python benchmarks/run.py`" in text
    assert text.count(spacy_overhead.START) == 1 and "spaCy rows" in text


def test_render_reads_each_rows_bound_from_its_entry_as_it_is_now():
    from run import with_current_bounds

    entry = next(e for e in ENTRIES if e.bounds)
    label = next(iter(entry.bounds))
    rows = [{"name": entry.name, "case": entry.case, "label": label, "bound": "an old text"},
            {"name": "Gone.v1", "case": "8x2", "label": "torch", "bound": "stale"}]
    fresh = with_current_bounds(rows, ENTRIES)
    assert fresh[0]["bound"] == entry.bounds[label] and fresh[1]["bound"] == ""
    assert rows[0]["bound"] == "an old text", "the measured rows are not written"
