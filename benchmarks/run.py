"""Run every benchmark entry, each in a fresh process, and write the results table.

    python benchmarks/run.py                 # all entries
    python benchmarks/run.py -k Sparse       # entries whose name or case contains "Sparse"

Each entry runs in a process of its own, so that no entry's timings depend on
what earlier entries left in the allocators (a freed 128 MB array changes
glibc's and torch's later allocations, and with them a side's time by up to
2x). Within the entry its callables are timed side by side, in interleaved
rounds (best of 5); ratios are ours / theirs, so below 1 means ours is faster. Results
go to ``docs/benchmarks.md`` (the table the docs show), ``docs/benchmarks.png``
(the chart of the ratios, drawn by ``chart.py``) and ``benchmarks/results.json``
(one row per comparison).

Like for like: numpy's BLAS/OpenMP pools are pinned to one thread with
threadpoolctl (the ``test`` extra) for the whole run and torch with
``torch.set_num_threads(1)``, whatever ``OMP_NUM_THREADS`` says; every
side of a row gets the same inputs (label dtypes included), and the
"computes" column says what a side computes when it differs from ours.
"""
import argparse
import importlib
import json
import os
import pathlib
import platform
import subprocess
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a hint for pools started before the pinning below

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from harness import MEMORY, best_times, gradient_bytes, peak_memory  # noqa: E402
from spacy_overhead import kept_section  # noqa: E402  (the section spacy_overhead.py writes)

THREADS = 1


def pin_threads():
    """Pin numpy's BLAS/OpenMP pools (threadpoolctl) and torch to :data:`THREADS`; return the limiter."""
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=THREADS)
    try:
        import torch

        torch.set_num_threads(THREADS)
    except ImportError:
        pass
    return limiter


def load_entries():
    entries = []
    for path in sorted((HERE / "entries").glob("*.py")):
        if path.name.startswith("_"):
            continue
        entries.extend(importlib.import_module(f"entries.{path.stem}").ENTRIES)
    return entries


def run_entry(entry, *, min_time):
    fns = entry.setup()
    times = best_times(fns, min_time=min_time)
    ours = times[entry.ours]
    rows = []
    for label, seconds in times.items():
        target = entry.targets.get(label)
        ratio = None if label == entry.ours else ours / seconds
        rows.append(
            {
                "name": entry.name,
                "case": entry.case,
                "label": label,
                "seconds": seconds,
                "ratio": ratio,
                "target": target,
                "met": None if target is None else bool(ratio <= target),
                "computes": entry.notes.get(label, ""),
                "bound": entry.bounds.get(label, ""),
            }
        )
    if entry.memory:
        grad_bytes = entry.grad_bytes() if entry.grad_bytes else gradient_bytes(fns[entry.ours]())
        peak = peak_memory(fns[entry.ours])
        ratio = peak / grad_bytes
        target = entry.memory_target
        rows.append(
            {
                "name": entry.name,
                "case": entry.case,
                "label": MEMORY,
                "seconds": None,
                "ratio": ratio,
                "target": target,
                "met": None if target is None else bool(ratio <= target),
                "bound": entry.bounds.get(MEMORY, ""),
            }
        )
        for label, fn in fns.items():
            if label.startswith("thinc"):
                rows.append(
                    {
                        "name": entry.name,
                        "case": entry.case,
                        "label": f"{label}: {MEMORY}",
                        "seconds": None,
                        "ratio": peak_memory(fn) / grad_bytes,
                        "target": None,
                        "met": None,
                    }
                )
    return rows


COLUMNS = """What the columns mean:

- *compared with*: the other side of the row, timed in the same run on the same inputs (the
  same label dtype: where the dtype matters there is one row per dtype). `numpy copy of
  guesses` is one `guesses.copy()`, the floor: any calculator writes a gradient of the
  guesses' size at least once. `peak memory / gradient bytes` is the peak of `tracemalloc`
  during one call (result included) divided by the bytes of the returned gradient: 1.0 means
  nothing but the gradient was allocated at its peak.
- *computes*: what that side computes, where it is not what ours computes (ours always
  returns the gradient and the loss, after its input checks).
- *ours / theirs*: our time divided by theirs (below 1: ours is faster), or for a memory row
  the ratio itself.
- *target*: the bound SPEC section 8 sets on that ratio (`<= 1`: no slower than PyTorch;
  `<= 4.5` on the copy row: within 4.5 numpy copies; `<= 0.556` on a Thinc row: at least
  1.8x faster than Thinc; `<= 1.1` on a memory row: at most 10% beyond the gradient).
  *met* says whether this run met it; a row without a target is shown for information.
"""


def fmt_seconds(s):
    if s is None:
        return ""
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def table(rows):
    lines = [
        "| loss | case | compared with | computes | time | ours / theirs | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        target = "" if r["target"] is None else f"<= {r['target']:g}"
        met = {None: "", True: "yes", False: "**no**"}[r["met"]]
        lines.append(
            f"| {r['name']} | {r['case']} | {r['label']} | {r.get('computes', '')} | {fmt_seconds(r['seconds'])} "
            f"| {ratio} | {target} | {met} |"
        )
    return "\n".join(lines)


def unmet(rows):
    """The rows whose target this run missed, each with what bounds it (from the entry)."""
    lines = []
    for r in rows:
        if r["met"] is False:
            bound = r.get("bound") or "not explained: a defect to fix"
            lines.append(f"- {r['name']} [{r['case']}], {r['label']}: {r['ratio']:.3f} (target <= {r['target']:g}). {bound}")
    if not lines:
        return ""
    return "## Targets this run did not meet, and what bounds them\n\n" + "\n".join(lines) + "\n"


def environment():
    import numpy
    import thinc

    parts = [f"Python {platform.python_version()}", f"numpy {numpy.__version__}", f"thinc {thinc.__version__}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} thread)")
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        pools = sorted({f"{p['internal_api']} {p['num_threads']} thread" for p in threadpool_info()})
        parts.append("numpy pools (threadpoolctl): " + ("; ".join(pools) or "none"))
    except ImportError:
        pass
    parts.append(f"{os.cpu_count()} CPUs, {platform.machine()}")
    return ", ".join(parts)


def with_current_bounds(rows, entries):
    """``rows`` (measured) with each row's bound text read anew from its entry."""
    bounds = {(e.name, e.case): e.bounds for e in entries}
    return [dict(row, bound=bounds.get((row["name"], row["case"]), {}).get(row["label"], "")) for row in rows]


def run_in_subprocess(index, *, min_time):
    """The rows of entry ``index`` (of :func:`load_entries`), measured in a fresh interpreter."""
    command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--entry", str(index), "--min-time", str(min_time)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only entries whose name or case contains this")
    parser.add_argument("--min-time", type=float, default=0.25, help="seconds per timing round set")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--render", action="store_true",
        help="measure nothing: rewrite the docs from benchmarks/results.json (the last full run, on this "
        "machine) with the entries' current texts of what bounds an unmet row",
    )
    parser.add_argument("--entry", type=int, help=argparse.SUPPRESS)  # the child: run one entry, print its rows
    args = parser.parse_args(argv)
    everything = load_entries()
    if args.entry is not None:
        with pin_threads():
            print(json.dumps(run_entry(everything[args.entry], min_time=args.min_time)))
        return 0
    if args.render:
        rows = with_current_bounds(json.loads((HERE / "results.json").read_text()), everything)
    else:
        rows = []
        for index, entry in enumerate(everything):
            if args.k in entry.name or args.k in entry.case:
                print(f"{entry.name} [{entry.case}] ...", file=sys.stderr, flush=True)
                rows.extend(run_in_subprocess(index, min_time=args.min_time))
    with pin_threads():
        machine = environment()
    text = table(rows)
    print(text)
    if not args.no_write and not args.k:
        (HERE / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        doc = HERE.parent / "docs" / "benchmarks.md"
        doc.parent.mkdir(exist_ok=True)
        kept = kept_section(doc.read_text()) if doc.exists() else ""
        doc.write_text(
            "# Benchmarks\n\n"
            "Written by `python benchmarks/run.py` (do not edit by hand). All comparisons of a row\n"
            "were timed side by side in one run; *ours / theirs* below 1 means ours is faster.\n"
            "Each entry runs in a fresh process; within it, the sides are timed in 5 interleaved\n"
            "rounds and each keeps its best per-call time. numpy's BLAS/OpenMP pools (threadpoolctl)\n"
            "and torch are pinned to one thread each.\n\n" + COLUMNS +
            f"\nMachine: {machine}.\n\n" + text + "\n\n" + (unmet(rows) + "\n" if unmet(rows) else "")
            + "![ratios](benchmarks.png)\n"
            + (f"\n{kept}\n" if kept else "")
        )
        import chart  # matplotlib: the `docs` extra

        chart.draw(rows, doc.parent / "benchmarks.png")
    failed = [r for r in rows if r["met"] is False]
    if failed:
        print(f"\n{len(failed)} target(s) not met", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
