"""Every benchmark entry runs (once, untimed): the suite keeps them from rotting.

Timing belongs to ``python benchmarks/run.py``, never to a test.
"""
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from harness import COPY_FLOOR  # noqa: E402
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
