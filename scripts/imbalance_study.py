"""Does a loss for imbalance help? Train the shipped examples three ways and write the per-label F-scores.

    python scripts/imbalance_study.py [--ner-steps 400] [--textcat-steps 300] [--no-write]

Trains, on the imbalanced corpus ``configs/spacy/corpus/ner_{train,dev}.spacy``
(written by ``make_ner_corpus.py``: rare entity labels whose names the
common labels use too; a rare topic, SUPPORT, whose documents read like those
of the majority topic MEETING, with a cue that MEETING documents share), the
shipped examples ``configs/spacy/ner_balanced.cfg`` (NER) and
``configs/spacy/textcat_class_weights.cfg`` (textcat) with

* the default loss (spaCy's own training, bit for bit),
* ``class_weights = "balanced"`` (counted from the training corpus),
* focal loss (``gamma = 2``),

everything else equal (same seed, same steps), and writes a table of the
per-label F-scores on the dev set, rare labels included, into
``docs/spacy.md`` between the markers ``<!-- imbalance-study:start -->`` and
``<!-- imbalance-study:end -->``. Run by hand or by the docs tooling, never
by the tests (it trains six pipelines).
"""
import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "configs" / "spacy" / "corpus"
DOC = ROOT / "docs" / "spacy.md"
START, END = "<!-- imbalance-study:start -->", "<!-- imbalance-study:end -->"

NER_LOSSES = {
    "default": {"@losses": "PartialLabelCrossentropy.v1", "normalize": False},
    "balanced": {"@losses": "PartialLabelCrossentropy.v1", "normalize": False, "class_weights": "balanced"},
    "focal (gamma 2)": {"@losses": "PartialLabelCrossentropy.v1", "normalize": False, "gamma": 2.0},
}
TEXTCAT_LOSSES = {
    "default": {"@losses": "CategoricalCrossentropy.v4", "normalize": False},
    "balanced": {"@losses": "CategoricalCrossentropy.v4", "normalize": False, "class_weights": "balanced"},
    "focal (gamma 2)": {"@losses": "CategoricalFocalCrossentropy.v1", "normalize": False, "gamma": 2.0},
}
EXAMPLES = [
    ("ner", "ner_balanced.cfg", "ner", NER_LOSSES, "ents_per_type", "ents_f"),
    ("textcat", "textcat_class_weights.cfg", "textcat", TEXTCAT_LOSSES, "cats_f_per_type", "cats_macro_f"),
]


def train_one(config_name: str, component: str, loss: dict, steps: int, workdir: Path):
    """Train one example with ``loss``; return the dev scores of the final model."""
    import spacy
    from spacy.cli.train import train
    from spacy.tokens import DocBin
    from spacy.training import Example
    from thinc.api import Config

    config = Config().from_disk(ROOT / "configs" / "spacy" / config_name, interpolate=False)
    config["components"][component]["loss"] = dict(loss)
    config["paths"]["train"] = str(CORPUS / "ner_train.spacy")
    config["paths"]["dev"] = str(CORPUS / "ner_dev.spacy")
    config["training"]["max_steps"] = steps
    config["training"]["eval_frequency"] = max(steps // 4, 1)
    path = workdir / "config.cfg"
    config.to_disk(path)
    output = workdir / "out"
    with contextlib.redirect_stdout(io.StringIO()):
        train(path, output)
    nlp = spacy.load(output / "model-last")
    docs = DocBin().from_disk(CORPUS / "ner_dev.spacy").get_docs(nlp.vocab)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    return nlp.evaluate(examples)


def run(ner_steps: int, textcat_steps: int):
    """``{example: {loss: scores}}`` for every example and loss."""
    results = {}
    for example, config_name, component, losses, _, _ in EXAMPLES:
        steps = ner_steps if example == "ner" else textcat_steps
        results[example] = {}
        for label, loss in losses.items():
            print(f"training {example} with the {label} loss ({steps} steps) ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    results[example][label] = train_one(config_name, component, loss, steps, Path(tmp))
                except Exception as err:  # a loss setting a component does not support yet: say so in the table
                    results[example][label] = {"error": f"{type(err).__name__}: {err}"}
    return results


def label_counts():
    import spacy
    from collections import Counter

    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(CORPUS / "ner_train.spacy").get_docs(nlp.vocab))
    ents = Counter(e.label_ for d in docs for e in d.ents)
    cats = Counter(max(d.cats, key=d.cats.get) for d in docs)
    return {"ner": ents, "textcat": cats}


def table(results, counts, steps) -> str:
    lines = []
    for example, config_name, _, losses, per_type, overall in EXAMPLES:
        by_loss = results[example]
        labels = sorted(counts[example], key=lambda label: -counts[example][label])
        total = sum(counts[example].values())
        lines.append(f"**{example}** (`configs/spacy/{config_name}`, {steps[example]} steps): dev F-score per label")
        lines.append("")
        lines.append("| label | share of train | " + " | ".join(losses) + " |")
        lines.append("|---|---|" + "---|" * len(losses))
        for label in labels + [overall]:
            name = f"*{overall}*" if label == overall else label
            share = "" if label == overall else f"{100 * counts[example][label] / total:.1f} %"
            cells = []
            for loss in losses:
                scores = by_loss[loss]
                if "error" in scores:
                    cells.append("error")
                elif label == overall:
                    cells.append(f"{100 * (scores.get(overall) or 0.0):.1f}")
                else:
                    cells.append(f"{100 * (scores.get(per_type) or {}).get(label, {}).get('f', 0.0):.1f}")
            lines.append(f"| {name} | {share} | " + " | ".join(cells) + " |")
        errors = [f"{loss}: {by_loss[loss]['error']}" for loss in losses if "error" in by_loss[loss]]
        if errors:
            lines.append("")
            lines.extend(f"Not run, {e}" for e in errors)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write(text: str) -> None:
    doc = DOC.read_text()
    block = (
        f"{START}\n_Written by `python scripts/imbalance_study.py` (do not edit by hand)._\n\n{text}{END}"
    )
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        doc = head + block + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip() + "\n\n## Does it help? Imbalanced NER and textcat\n\n" + block + "\n"
    DOC.write_text(doc)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ner-steps", type=int, default=400)
    parser.add_argument("--textcat-steps", type=int, default=300)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    results = run(args.ner_steps, args.textcat_steps)
    text = table(results, label_counts(), {"ner": args.ner_steps, "textcat": args.textcat_steps})
    print(text)
    if not args.no_write:
        write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
