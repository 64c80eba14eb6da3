"""Run every benchmark entry in one process and write the results table.

    python benchmarks/run.py                 # all entries
    python benchmarks/run.py -k Sparse       # entries whose name or case contains "Sparse"

Each entry's callables are timed side by side in the same run (best of 5
rounds); ratios are ours / theirs, so below 1 means ours is faster. Results
go to ``docs/benchmarks.md`` (the table the docs show), ``docs/benchmarks.png``
(the chart of the ratios, drawn by ``chart.py``) and ``benchmarks/results.json``
(one row per comparison).
"""
import argparse
import importlib
import json
import os
import pathlib
import platform
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")  # torch and numpy on one thread each

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from harness import best_time, peak_memory  # noqa: E402


def load_entries():
    entries = []
    for path in sorted((HERE / "entries").glob("*.py")):
        if path.name.startswith("_"):
            continue
        entries.extend(importlib.import_module(f"entries.{path.stem}").ENTRIES)
    return entries


def run_entry(entry, *, min_time):
    fns = entry.setup()
    times = {label: best_time(fn, min_time=min_time) for label, fn in fns.items()}
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
            }
        )
    if entry.memory:
        peak = peak_memory(fns[entry.ours])
        ratio = peak / entry.grad_bytes()
        target = entry.memory_target
        rows.append(
            {
                "name": entry.name,
                "case": entry.case,
                "label": "peak memory / gradient bytes",
                "seconds": None,
                "ratio": ratio,
                "target": target,
                "met": None if target is None else bool(ratio <= target),
            }
        )
        for label, fn in fns.items():
            if label.startswith("thinc"):
                rows.append(
                    {
                        "name": entry.name,
                        "case": entry.case,
                        "label": f"{label}: peak memory / gradient bytes",
                        "seconds": None,
                        "ratio": peak_memory(fn) / entry.grad_bytes(),
                        "target": None,
                        "met": None,
                    }
                )
    return rows


def fmt_seconds(s):
    if s is None:
        return ""
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def table(rows):
    lines = [
        "| loss | case | compared with | time | ours / theirs | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        target = "" if r["target"] is None else f"<= {r['target']:g}"
        met = {None: "", True: "yes", False: "**no**"}[r["met"]]
        lines.append(
            f"| {r['name']} | {r['case']} | {r['label']} | {fmt_seconds(r['seconds'])} | {ratio} | {target} | {met} |"
        )
    return "\n".join(lines)


def environment():
    import numpy
    import thinc

    parts = [f"Python {platform.python_version()}", f"numpy {numpy.__version__}", f"thinc {thinc.__version__}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} thread)")
    except ImportError:
        pass
    parts.append(f"{os.cpu_count()} CPUs, {platform.machine()}")
    return ", ".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only entries whose name or case contains this")
    parser.add_argument("--min-time", type=float, default=0.25, help="seconds per timing round set")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    entries = [e for e in load_entries() if args.k in e.name or args.k in e.case]
    rows = []
    for entry in entries:
        print(f"{entry.name} [{entry.case}] ...", file=sys.stderr, flush=True)
        rows.extend(run_entry(entry, min_time=args.min_time))
    text = table(rows)
    print(text)
    if not args.no_write and not args.k:
        (HERE / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        doc = HERE.parent / "docs" / "benchmarks.md"
        doc.parent.mkdir(exist_ok=True)
        doc.write_text(
            "# Benchmarks\n\n"
            "Written by `python benchmarks/run.py` (do not edit by hand). All comparisons of a row\n"
            "were timed side by side in one run; *ours / theirs* below 1 means ours is faster.\n"
            "Times are the best of 5 rounds per call; numpy and torch each use one thread.\n\n"
            f"Machine: {environment()}.\n\n" + text + "\n\n![ratios](benchmarks.png)\n"
        )
        import chart  # matplotlib: the `docs` extra

        chart.draw(rows, doc.parent / "benchmarks.png")
    failed = [r for r in rows if r["met"] is False]
    if failed:
        print(f"\n{len(failed)} target(s) not met", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
