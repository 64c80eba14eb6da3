"""Overhead of the spaCy ``*_with_loss`` components against the built-ins they extend.

    python benchmarks/spacy_overhead.py                  # every component; writes docs/benchmarks.md
    python benchmarks/spacy_overhead.py -k tagger        # components whose name contains "tagger"
    python benchmarks/spacy_overhead.py --no-write       # print only

Each component is built twice from the same config and seed, once with the
built-in factory and once with its ``*_with_loss`` twin (default loss: the
same training bit for bit), and initialized on the shipped corpus
(``configs/spacy/corpus/train.spacy``; ``ner_train.spacy`` for ``ner``,
``parser`` and ``entity_linker``, whose knowledge base is built from the
corpus's entities). Measured side by side in one run, BLAS and torch pinned
to one thread (threadpoolctl, as ``run.py``), the sides' rounds interleaved
(the update ratios: the median of the per-round ratios; times: the best round):

* ``nlp.update`` per step: the twin with its default loss, and with
  ``class_weights = "balanced"`` where that loss takes class weights,
  against the built-in (SPEC section 8: within 1.10x and 1.25x);
* ``get_loss`` on the same examples and scores (captured from a real
  update), and inside it the calculator alone (``pipe.loss``'s
  ``__call__``, replayed on the arguments the component passed it): what
  the twin spends beyond the calculator is reported next to the built-in's
  ``get_loss``. For ``ner`` and ``parser``, whose loss is computed inside
  the transition loop, the time is ``get_batch_loss``'s, summed over one
  update (states change as the update proceeds, so nothing is replayed).

The results are written into ``docs/benchmarks.md`` between the markers
:data:`START` and :data:`END` (``run.py`` keeps that section when it
rewrites the file). Run by hand or by the docs tooling, never by the tests
(``tests/test_benchmarks.py`` runs the machinery once, untimed).
"""
import argparse
import contextlib
import gc
import io
import os
import pathlib
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = ROOT / "configs" / "spacy" / "corpus"
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- spacy-overhead:start -->", "<!-- spacy-overhead:end -->"
UPDATE_TARGET, BALANCED_TARGET = 1.10, 1.25


@dataclass
class Case:
    base: str  # the built-in factory; the twin is f"{base}_with_loss"
    corpus: str = "train"  # configs/spacy/corpus/<corpus>.spacy
    config: dict = field(default_factory=dict)  # settings of both sides (factory defaults otherwise)
    balanced: Optional[dict] = None  # the twin's loss block with class_weights = "balanced", if it takes them


def _balanced(name: str, **settings) -> dict:
    return {"@losses": name, "normalize": False, "class_weights": "balanced", **settings}


CASES = [
    Case("textcat", balanced=_balanced("CategoricalCrossentropy.v4")),
    Case("textcat_multilabel"),  # L2Distance.v2: no class weights
    Case("tagger", balanced=_balanced("SequenceCategoricalCrossentropy.v4")),
    Case("senter", balanced=_balanced("SequenceCategoricalCrossentropy.v4")),
    Case("morphologizer", balanced=_balanced("SequenceCategoricalCrossentropy.v4")),
    Case("spancat"),
    Case("spancat_singlelabel", balanced=_balanced("CategoricalCrossentropy.v4")),
    Case("span_finder"),
    Case("trainable_lemmatizer", balanced=_balanced("SequenceCategoricalCrossentropy.v4", missing_value=-1)),
    Case("entity_linker", corpus="ner_train"),
    Case("ner", corpus="ner_train", balanced=_balanced("PartialLabelCrossentropy.v1")),
    Case("parser", corpus="ner_train", balanced=_balanced("PartialLabelCrossentropy.v1")),
]
TRANSITION = {"ner", "parser"}


# Pipelines ----------------------------------------------------------------------------------


def corpus_examples(nlp, corpus: str, n_docs: int):
    """The first ``n_docs`` documents of a shipped corpus, as training examples."""
    from spacy.tokens import DocBin
    from spacy.training import Example

    docs = list(DocBin().from_disk(CORPUS / f"{corpus}.spacy").get_docs(nlp.vocab))[:n_docs]
    return [Example(nlp.make_doc(doc.text), doc) for doc in docs]


def linked(examples):
    """The examples with a knowledge-base ID on every entity (``label:text``)."""
    from spacy.tokens import Span

    for eg in examples:
        ref = eg.reference
        ref.ents = [Span(ref, e.start, e.end, label=e.label_, kb_id=f"{e.label_}:{e.text}") for e in ref.ents]
    return examples


def knowledge_base(examples, width: int):
    """A knowledge base of the examples' entities: one alias per entity text, two candidates each."""
    import numpy
    from spacy.kb import InMemoryLookupKB

    def create(vocab):
        kb = InMemoryLookupKB(vocab, entity_vector_length=width)
        rng = numpy.random.default_rng(0)
        by_text = {}
        for eg in examples:
            for ent in eg.reference.ents:
                by_text.setdefault(ent.text, set()).add(ent.kb_id_)
        decoy = "DECOY:0"
        kb.add_entity(entity=decoy, freq=1, entity_vector=rng.standard_normal(width).tolist())
        for text, ids in sorted(by_text.items()):
            for kb_id in sorted(ids):
                if not kb.contains_entity(kb_id):
                    kb.add_entity(entity=kb_id, freq=10, entity_vector=rng.standard_normal(width).tolist())
            entities = sorted(ids) + [decoy]
            kb.add_alias(alias=text, entities=entities, probabilities=[0.9 / len(ids)] * len(ids) + [0.1])
        return kb

    return create


def build(case: Case, factory: str, *, loss: Optional[dict] = None, n_docs: int, batch: int, seed: int = 0):
    """``(nlp, pipe, batch of examples, optimizer)``: one initialized component."""
    import spacy
    from thinc.api import fix_random_seed

    fix_random_seed(seed)
    nlp = spacy.blank("en")
    config = dict(case.config)
    if loss is not None:
        config["loss"] = loss
    pipe = nlp.add_pipe(factory, name=case.base, config=config)
    examples = corpus_examples(nlp, case.corpus, n_docs)
    if case.base == "entity_linker":
        examples = linked(examples)
        pipe.set_kb(knowledge_base(examples, pipe.cfg.get("entity_vector_length", 64)))
    with contextlib.redirect_stdout(io.StringIO()):  # "balanced" prints its counted table
        optimizer = nlp.initialize(lambda: examples)
    return nlp, pipe, examples[:batch], optimizer


# Timing -------------------------------------------------------------------------------------


def interleaved(fns: Dict[str, Callable[[], object]], *, rounds: int, number: int) -> Dict[str, List[float]]:
    """Seconds per call of each side in each of ``rounds`` rounds of ``number`` calls, the sides
    interleaved within each round (the garbage collector runs between the timed calls, not within)."""
    times: Dict[str, List[float]] = {label: [] for label in fns}
    for label, fn in fns.items():  # warm up
        fn()
    for r in range(rounds):
        for label in list(fns) if r % 2 == 0 else list(reversed(list(fns))):
            fn = fns[label]
            with paused_gc():
                start = time.perf_counter()
                for _ in range(number):
                    fn()
                times[label].append((time.perf_counter() - start) / number)
    return times


def best(times: Dict[str, List[float]]) -> Dict[str, float]:
    return {label: min(seconds) for label, seconds in times.items()}


def paired_ratio(times: Dict[str, List[float]], ours: str, theirs: str) -> float:
    """The median over rounds of ``ours / theirs`` timed in the same round: on a shared machine,
    load that comes and goes hits both sides of a round alike, and the median drops the rounds
    where it did not."""
    ratios = sorted(a / b for a, b in zip(times[ours], times[theirs]))
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


@contextlib.contextmanager
def paused_gc():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def calls_to_time(fn: Callable[[], object], min_time: float) -> int:
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(min_time / once))


@contextlib.contextmanager
def recording(classes, record: Optional[list] = None, timer: Optional[dict] = None):
    """Patch ``__call__`` of ``classes``: append each outermost call's ``(obj, args, kwargs)`` to
    ``record`` and/or add its seconds to ``timer["seconds"]``; restore the classes afterwards."""
    saved = {cls: cls.__dict__.get("__call__") for cls in classes}
    depth = [0]  # a calculator calling another one is counted once, in the outer call

    def patch(cls):
        original = cls.__call__

        def spy(self, *args, **kwargs):
            if depth[0]:
                return original(self, *args, **kwargs)
            if record is not None:
                record.append((self, args, kwargs))
            depth[0] += 1
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                depth[0] -= 1
                if timer is not None:
                    timer["seconds"] += time.perf_counter() - start

        cls.__call__ = spy

    for cls in classes:
        patch(cls)
    try:
        yield
    finally:
        for cls, own in saved.items():
            if own is None:
                del cls.__call__
            else:
                cls.__call__ = own


def capture_get_loss(nlp, pipe, batch):
    """The ``(args, kwargs)`` of the ``get_loss`` call of one real update (no parameters change)."""
    seen = []
    original = pipe.get_loss

    def spy(*args, **kwargs):
        seen.append((args, kwargs))
        return original(*args, **kwargs)

    pipe.get_loss = spy
    try:
        nlp.update(batch, sgd=None, drop=0.0, losses={})
    finally:
        del pipe.get_loss
    return seen[0]


def loss_classes(pipe):
    return {type(leaf) for _, _, leaf in pipe._bound_loss()[1]}


def measure_get_loss(case, sides, *, rounds: int, min_time: float) -> Dict[str, List[float]]:
    """``get_loss`` of each side on the same captured inputs, and the twin's calculator alone."""
    nlp_b, builtin, batch_b, _ = sides["built-in"]
    nlp_t, twin, batch_t, _ = sides["twin"]
    args_b, kwargs_b = capture_get_loss(nlp_b, builtin, batch_b)
    args_t, kwargs_t = capture_get_loss(nlp_t, twin, batch_t)
    calls: list = []
    with recording(loss_classes(twin), record=calls):
        twin.get_loss(*args_t, **kwargs_t)

    def calculator():
        for obj, args, kwargs in calls:
            obj(*args, **kwargs)

    fns = {
        "built-in": lambda: builtin.get_loss(*args_b, **kwargs_b),
        "twin": lambda: twin.get_loss(*args_t, **kwargs_t),
        "calculator": calculator,
    }
    number = calls_to_time(fns["twin"], min_time / max(rounds, 1))
    return interleaved(fns, rounds=rounds, number=number)


#: Seconds spent in ``get_batch_loss`` by the timed built-ins (see :func:`timed_transition_factory`).
BUILTIN_BATCH_LOSS = {"seconds": 0.0}


def timed_transition_factory(base: str) -> str:
    """Register (once) and return a factory of the built-in ``base`` (``ner`` or ``parser``) whose
    ``get_batch_loss`` adds its seconds to :data:`BUILTIN_BATCH_LOSS`.

    spaCy's own classes are compiled (no attribute can be patched on them or their instances), so
    the built-in side of the ``get_batch_loss`` timing is a Python subclass that only times the call.
    """
    from spacy.language import Language
    from spacy.pipeline import DependencyParser, EntityRecognizer

    name = f"spacy_overhead_timed_{base}"
    if Language.has_factory(name):
        return name
    builtin = {"ner": EntityRecognizer, "parser": DependencyParser}[base]

    def get_batch_loss(self, *args):
        start = time.perf_counter()
        result = builtin.get_batch_loss(self, *args)
        BUILTIN_BATCH_LOSS["seconds"] += time.perf_counter() - start
        return result

    timed = type(f"Timed{builtin.__name__}", (builtin,), {"get_batch_loss": get_batch_loss})
    meta = Language.get_factory_meta(base)
    if base == "ner":

        def make(nlp, name, model, moves, update_with_oracle_cut_size, incorrect_spans_key, scorer):
            return timed(nlp.vocab, model, name, moves, update_with_oracle_cut_size=update_with_oracle_cut_size,
                         incorrect_spans_key=incorrect_spans_key, scorer=scorer)

    else:

        def make(nlp, name, model, moves, update_with_oracle_cut_size, learn_tokens, min_action_freq, scorer):
            return timed(nlp.vocab, model, name, moves, update_with_oracle_cut_size=update_with_oracle_cut_size,
                         learn_tokens=learn_tokens, min_action_freq=min_action_freq, scorer=scorer)

    Language.factory(name, default_config=meta.default_config)(make)
    return name


def measure_transition_loss(case, sides, *, rounds: int, steps: int, n_docs: int, batch: int) -> Dict[str, List[float]]:
    """``get_batch_loss`` seconds per update of each side (summed over the transition loop), and the
    twin's calculator within it."""
    from thinc_losses_plus.transition import PartialLabelCrossentropy

    # both sides fresh from the same seed: the twin trains bit for bit as the built-in, so the
    # rounds' states and costs are the same on both sides
    timed_side = build(case, timed_transition_factory(case.base), n_docs=n_docs, batch=batch)
    twin_side = build(case, f"{case.base}_with_loss", n_docs=n_docs, batch=batch)
    twin_timer = {"seconds": 0.0}
    twin = twin_side[1]
    original = twin.get_batch_loss

    def timed(*args):
        start = time.perf_counter()
        result = original(*args)
        twin_timer["seconds"] += time.perf_counter() - start
        return result

    twin.get_batch_loss = timed  # the twin is a Python class: its instances take attributes
    timers = {"built-in": BUILTIN_BATCH_LOSS, "twin": twin_timer}
    runs = {"built-in": timed_side, "twin": twin_side}
    times: Dict[str, List[float]] = {"built-in": [], "twin": [], "calculator": []}
    calc = {"seconds": 0.0}
    try:
        with recording({PartialLabelCrossentropy}, timer=calc):
            for r in range(rounds + 1):  # the first round warms up
                for label in ("built-in", "twin") if r % 2 == 0 else ("twin", "built-in"):
                    nlp, _, examples, optimizer = runs[label]
                    timers[label]["seconds"] = calc["seconds"] = 0.0
                    with paused_gc():
                        for _ in range(steps):
                            nlp.update(examples, sgd=optimizer, drop=0.0, losses={})
                    if r:
                        times[label].append(timers[label]["seconds"] / steps)
                        if label == "twin":
                            times["calculator"].append(calc["seconds"] / steps)
    finally:
        del twin.get_batch_loss
    return times


def measure(case: Case, *, n_docs: int = 200, batch: int = 64, steps: int = 1, rounds: int = 10,
            min_time: float = 0.2) -> dict:
    """One row of results for ``case`` (seconds per call, and the ratios)."""
    sides = {
        "built-in": build(case, case.base, n_docs=n_docs, batch=batch),
        "twin": build(case, f"{case.base}_with_loss", n_docs=n_docs, batch=batch),
    }
    if case.balanced is not None:
        sides["balanced"] = build(case, f"{case.base}_with_loss", loss=case.balanced, n_docs=n_docs, batch=batch)

    def update(side):
        nlp, _, examples, optimizer = side
        return lambda: nlp.update(examples, sgd=optimizer, drop=0.0, losses={})

    times = interleaved({label: update(side) for label, side in sides.items()}, rounds=rounds, number=steps)
    updates = best(times)
    if case.base in TRANSITION:
        loss_times = measure_transition_loss(case, sides, rounds=rounds, steps=steps, n_docs=n_docs, batch=batch)
    else:
        loss_times = measure_get_loss(case, sides, rounds=rounds, min_time=min_time)
    losses = best(loss_times)
    loss_times["beyond"] = [max(t - c, 0.0) for t, c in zip(loss_times["twin"], loss_times["calculator"])]
    n_words = sum(len(eg.reference) for eg in sides["built-in"][2])
    row = {
        "component": f"{case.base}_with_loss",
        "batch": f"{len(sides['built-in'][2])} docs, {n_words} words",
        "update built-in": updates["built-in"],
        "update twin": updates["twin"],
        "update ratio": paired_ratio(times, "twin", "built-in"),
        "balanced": updates.get("balanced"),
        "update met": None,
        "balanced ratio": None,
        "balanced met": None,
        "get_loss built-in": losses["built-in"],
        "get_loss twin": losses["twin"],
        "calculator": losses["calculator"],
        "beyond": max(losses["twin"] - losses["calculator"], 0.0),
        "beyond ratio": paired_ratio(loss_times, "beyond", "built-in"),
        "loss kind": "get_batch_loss per update" if case.base in TRANSITION else "get_loss",
    }
    row["update met"] = row["update ratio"] <= UPDATE_TARGET
    if case.balanced is not None:
        row["balanced ratio"] = paired_ratio(times, "balanced", "built-in")
        row["balanced met"] = row["balanced ratio"] <= BALANCED_TARGET
    return row


# The table ------------------------------------------------------------------------------------


def ms(seconds) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3f} ms"


def met(value) -> str:
    return {None: "", True: "yes", False: "**no**"}[value]


def table(rows: List[dict]) -> str:
    lines = [
        "| component | batch | update: built-in | twin / built-in (<= 1.1) | met "
        "| balanced / built-in (<= 1.25) | met | built-in get_loss | twin get_loss | in the calculator "
        "| twin beyond the calculator | beyond / built-in get_loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        balanced = "n/a" if r["balanced ratio"] is None else f"{r['balanced ratio']:.3f}"
        kind = "" if r["loss kind"] == "get_loss" else " (get_batch_loss)"
        lines.append(
            f"| {r['component']}{kind} | {r['batch']} | {ms(r['update built-in'])} | {r['update ratio']:.3f} "
            f"| {met(r['update met'])} | {balanced} | {met(r['balanced met'])} | {ms(r['get_loss built-in'])} "
            f"| {ms(r['get_loss twin'])} | {ms(r['calculator'])} | {ms(r['beyond'])} "
            f"| {r['beyond ratio']:.2f} |"
        )
    return "\n".join(lines)


EXPLANATION = """## spaCy components

Written by `python benchmarks/spacy_overhead.py` (do not edit by hand; `run.py` keeps this
section). Each `*_with_loss` component and the built-in it extends are built from the same
config and seed (the factories' default models) and initialized on the shipped corpus
(`configs/spacy/corpus/train.spacy`; `ner_train.spacy` for `ner`, `parser` and
`entity_linker`, whose knowledge base is built from the corpus's entities). The sides' rounds
are interleaved in one run; BLAS and torch are pinned to one thread.

- *update*: `nlp.update` per step (the default loss trains bit for bit as the built-in); the
  time is the built-in's best round. *twin / built-in*: the twin with its default loss, the
  median over the rounds of the two sides' ratio within a round (load that comes and goes
  hits both sides of a round alike); SPEC section 8 targets 1.10. *balanced / built-in*: the
  twin with `class_weights = "balanced"` (n/a where the default loss takes no class weights);
  target 1.25.
- *get_loss*: the component's `get_loss` on the examples and scores of one real update (best
  round). *in the calculator*: the part of the twin's `get_loss` spent in `pipe.loss` itself
  (its `__call__` replayed on the arguments the component passed it); *twin beyond the
  calculator*: the rest (truths, masks, binding, the gradient handed to the output layer),
  shown next to the built-in's whole `get_loss`; *beyond / built-in*: their ratio (the median
  of the rounds' ratios). For `ner` and `parser` the times are `get_batch_loss`, summed over
  the transition loop of one update: the twin runs the built-in's own `get_batch_loss` for the
  action costs, then the calculator, so its part beyond the calculator includes the built-in's
  whole `get_batch_loss`.
"""


def section(rows: List[dict], machine: str) -> str:
    return f"{START}\n{EXPLANATION}\nMachine: {machine}.\n\n{table(rows)}\n{END}"


def write(text: str, doc: pathlib.Path = DOC) -> None:
    """Put ``text`` (a whole marked section) into ``doc``, replacing the marked section there."""
    current = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if START in current and END in current:
        head, rest = current.split(START, 1)
        current = head + text + rest.split(END, 1)[1]
    else:
        current = current.rstrip() + "\n\n" + text + "\n"
    doc.write_text(current)


def kept_section(doc_text: str) -> str:
    """The marked section of a ``docs/benchmarks.md`` text ("" if none): what ``run.py`` keeps."""
    if START not in doc_text or END not in doc_text:
        return ""
    return START + doc_text.split(START, 1)[1].split(END, 1)[0] + END


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only components whose name contains this")
    parser.add_argument("--docs", type=int, default=200, help="corpus documents to initialize on")
    parser.add_argument("--batch", type=int, default=64, help="documents per update")
    parser.add_argument("--steps", type=int, default=1, help="updates per timing round")
    parser.add_argument("--rounds", type=int, default=10, help="timing rounds (the best is kept)")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds of get_loss calls per side")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from run import environment, pin_threads

    rows = []
    with pin_threads():
        for case in CASES:
            if args.k not in case.base:
                continue
            print(f"{case.base} ...", file=sys.stderr, flush=True)
            rows.append(
                measure(case, n_docs=args.docs, batch=args.batch, steps=args.steps, rounds=args.rounds,
                        min_time=args.min_time)
            )
        machine = environment()
    import spacy

    machine += f", spacy {spacy.__version__}"
    text = table(rows)
    print(text)
    if not args.no_write and not args.k:
        write(section(rows, machine))
    missed = [r["component"] for r in rows if r["update met"] is False or r["balanced met"] is False]
    if missed:
        print(f"\ntarget(s) not met: {missed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
