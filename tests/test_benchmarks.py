"""Every benchmark entry runs (once, untimed): the suite keeps them from rotting.

Timing belongs to ``python benchmarks/run.py``, never to a test.
"""
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from run import load_entries  # noqa: E402

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
