"""Draw the benchmark ratios (ours / theirs) as a PNG for the docs.

    python benchmarks/chart.py                       # benchmarks/results.json -> docs/benchmarks.png
    python benchmarks/chart.py RESULTS.json OUT.png

Reads the rows ``benchmarks/run.py`` writes: ``{"name", "case", "label",
"seconds", "ratio", "target", "met"}``. Every timed comparison (a row with
``seconds`` and a ``ratio``) becomes one horizontal bar, on a log scale
where 1 means "as fast as theirs" and left of 1 means ours is faster; bars
are coloured by what they compare with (Thinc, PyTorch, anything else) and
a target the SPEC sets is drawn as a black tick (green bar: met, red: not).
Needs matplotlib (``pip install -e ".[docs]"``).
"""
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results.json"
DEFAULT_OUTPUT = HERE.parent / "docs" / "benchmarks.png"

KIND_COLOURS = {"Thinc": "#4c72b0", "PyTorch": "#dd8452", "other": "#8c8c8c"}
MET_COLOURS = {True: "#55a868", False: "#c44e52"}


def baseline_kind(label: str) -> str:
    """Thinc, PyTorch or other, from a comparison's label.

    >>> baseline_kind("thinc v3"), baseline_kind("torch cross_entropy fwd+bwd"), baseline_kind("numpy copy")
    ('Thinc', 'PyTorch', 'other')
    """
    low = label.lower()
    if "thinc" in low:
        return "Thinc"
    if "torch" in low:
        return "PyTorch"
    return "other"


def timed_comparisons(rows: Sequence[Dict]) -> List[Dict]:
    """The rows to draw: timings of ours against something, in file order.

    >>> rows = [
    ...     {"name": "A.v1", "case": "8x2", "label": "ours", "seconds": 1.0, "ratio": None, "target": None, "met": None},
    ...     {"name": "A.v1", "case": "8x2", "label": "torch", "seconds": 2.0, "ratio": 0.5, "target": 1.0, "met": True},
    ...     {"name": "A.v1", "case": "8x2", "label": "peak memory / gradient bytes", "seconds": None,
    ...      "ratio": 1.0, "target": 1.1, "met": True},
    ... ]
    >>> [r["label"] for r in timed_comparisons(rows)]
    ['torch']
    """
    return [r for r in rows if r.get("seconds") is not None and r.get("ratio") is not None]


def bar_label(row: Dict) -> str:
    return f"{row['name']} [{row['case']}] vs {row['label']}"


def draw(rows: Sequence[Dict], output: Path, *, title: Optional[str] = None) -> int:
    """Write the chart of ``rows`` to ``output``; return the number of bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    bars = timed_comparisons(rows)
    if not bars:
        raise ValueError("no timed comparison in the results: run benchmarks/run.py first")
    height = 1.8 + 0.28 * len(bars)
    fig, ax = plt.subplots(figsize=(9, height))
    positions = list(range(len(bars)))[::-1]  # first row at the top
    ratios = [r["ratio"] for r in bars]
    colours = [KIND_COLOURS[baseline_kind(r["label"])] for r in bars]
    edges = [MET_COLOURS.get(r.get("met"), "none") for r in bars]
    ax.barh(positions, ratios, color=colours, edgecolor=edges, linewidth=[2 if e != "none" else 0 for e in edges])
    for y, row in zip(positions, bars):
        if row.get("target") is not None:
            ax.plot([row["target"]] * 2, [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.text(row["ratio"], y, f" {row['ratio']:.2g}", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    low, high = min(ratios + [1.0]), max(ratios + [1.0] + [r["target"] for r in bars if r.get("target")])
    ax.set_xlim(low / 2, high * 3)
    ax.set_ylim(-0.7, len(bars) - 0.3)
    ax.set_yticks(positions)
    ax.set_yticklabels([bar_label(r) for r in bars], fontsize=7)
    ax.set_xlabel("time ratio, ours / theirs (log scale; < 1: ours is faster)")
    ax.set_title(title or "thinc-losses-plus against Thinc and PyTorch (same run, one thread)")
    legend = [Patch(color=c, label=f"vs {k}") for k, c in KIND_COLOURS.items()]
    legend += [
        Patch(facecolor="white", edgecolor=MET_COLOURS[True], linewidth=2, label="target met"),
        Patch(facecolor="white", edgecolor=MET_COLOURS[False], linewidth=2, label="target not met"),
    ]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return len(bars)


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    results = Path(args[0]) if args else DEFAULT_RESULTS
    output = Path(args[1]) if len(args) > 1 else DEFAULT_OUTPUT
    rows = json.loads(results.read_text(encoding="utf8"))
    count = draw(rows, output)
    print(f"wrote {output} ({count} comparisons)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
