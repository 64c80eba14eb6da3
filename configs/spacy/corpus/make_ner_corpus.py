"""Write the imbalanced NER, parsing and text classification corpus of the spaCy examples.

    python configs/spacy/corpus/make_ner_corpus.py

Generates, deterministically (fixed seed, no download), short English
sentences from a small grammar, each annotated with entities and a
dependency parse (heads and labels). The entity labels are imbalanced, and
the rare ones are hard: their names are words the common labels use too,
so only the context tells them apart.

* ``PERSON`` (about 68 % of the mentions), ``CITY`` (about 25 %), ``ORG``
  (about 7 %: company names that are also surnames, "works for Ford") and
  ``PRODUCT`` (about 1 %: product names that are also first names or
  cities, "bought a Jordan"). In the contexts the rare labels share with
  the common ones ("works for Ford": a person or a company; "bought a
  Jordan from Dell": a product or a company) the names come from one pool
  whatever the label, so there the label is a matter of odds: a loss that
  follows the majority never predicts the rare label there;
* ``doc.cats``: an exclusive topic, the kind of the document's first
  sentence (MEETING about 52 %, TRAVEL 27 %, WORK 10 %, SHOPPING 6 %),
  or the rare topic SUPPORT (about 4 %: help-desk notes), whose documents
  read exactly like meeting notes ("Kenji helped Sam today."). Its only
  cue is the verb of the first sentence, "helped" (or, rarely, "called"),
  and ordinary meetings use these verbs too: with the cue a note is
  SUPPORT three times in ten (one in twenty with "called"), MEETING
  otherwise, so a loss that follows the majority says MEETING and never
  predicts SUPPORT. Two documents in three have a second sentence, often
  of another kind, so a bag of words cannot tell the topic. The topics
  are drawn from a generator of their own, seeded from the sentences'
  generator without drawing from it: the sentences and entities do not
  depend on the topics;
* one or two sentences per document.

It writes ``ner_train.spacy`` and ``ner_dev.spacy`` next to this file.
"""
import random
from pathlib import Path
from typing import List, Tuple

SEED = 20261201
N_TRAIN = 600
N_DEV = 240

FIRST = ["Maria", "Tom", "Aisha", "Kenji", "Laura", "Diego", "Priya", "Sam", "Jordan", "Morgan", "Austin", "Victoria"]
SURNAME = ["Lopez", "Smith", "Tanaka", "Ford", "Dell", "Morgan", "Wells", "Jordan", "Austin", "Chase"]
CITY = ["Paris", "Lima", "Osaka", "Cairo", "Austin", "Victoria", "Florence", "Denver", "Jordan"]
ORG = ["Ford", "Dell", "Morgan", "Wells", "Chase", "Tanaka", "Smith"]
PRODUCT = ["Jordan", "Victoria", "Austin", "Morgan", "Maria", "Diego"]
VERB_MET = ["met", "called", "thanked", "visited", "helped"]
VERB_CITY = ["visited", "left", "loved", "toured"]
TIME = ["today", "yesterday", "again", "twice"]

# A template: (slot, head index, dependency label). An entity slot is a label,
# or a tuple of (label, probability) choices: contexts are shared between
# labels, so a rare label is told apart by its name as much as by its context.
# Templates are drawn with the weights below, which make the imbalance.
OBJECT = (("PERSON", 0.92), ("ORG", 0.08))
EMPLOYER = (("ORG", 0.4), ("PERSON", 0.6))
GOODS = (("PRODUCT", 0.45), ("ORG", 0.55))
SELLER = (("ORG", 0.35), ("PERSON", 0.65))
TEMPLATES: List[Tuple[float, List[Tuple[object, int, str]]]] = [
    (0.34, [("PERSON", 1, "nsubj"), ("VERB_MET", 1, "ROOT"), (OBJECT, 1, "dobj"), ("TIME", 1, "advmod"), (".", 1, "punct")]),
    (0.26, [("PERSON", 1, "nsubj"), ("VERB_CITY", 1, "ROOT"), ("CITY", 1, "dobj"), ("TIME", 1, "advmod"), (".", 1, "punct")]),
    (0.22, [("PERSON", 1, "nsubj"), ("VERB_MET", 1, "ROOT"), (OBJECT, 1, "dobj"), ("in", 1, "prep"), ("CITY", 3, "pobj"), (".", 1, "punct")]),
    (0.11, [("PERSON", 1, "nsubj"), ("works", 1, "ROOT"), ("for", 1, "prep"), (EMPLOYER, 2, "pobj"), ("in", 1, "prep"), ("CITY", 4, "pobj"), (".", 1, "punct")]),
    (0.07, [("PERSON", 1, "nsubj"), ("bought", 1, "ROOT"), ("a", 3, "det"), (GOODS, 1, "dobj"), ("from", 1, "prep"), (SELLER, 4, "pobj"), (".", 1, "punct")]),
]
ENTITY = ("PERSON", "CITY", "ORG", "PRODUCT")


#: The names of the shared contexts ("works for X", "bought a X from Y"): one
#: pool whatever the label, so there the label is a matter of odds, as with
#: real names that are people, companies and products at once.
SHARED_NAMES = ["Ford", "Dell", "Morgan", "Wells", "Chase", "Jordan", "Austin"]


def entity_words(rng: random.Random, slot) -> Tuple[List[str], str]:
    if isinstance(slot, tuple):
        labels, weights = zip(*slot)
        label = rng.choices(labels, weights)[0]
        if slot is not OBJECT:
            return [rng.choice(SHARED_NAMES)], label
        slot = label
    if slot == "PERSON":
        if rng.random() < 0.4:
            return [rng.choice(FIRST), rng.choice(SURNAME)], "PERSON"
        return [rng.choice(FIRST)], "PERSON"
    pool = {"CITY": CITY, "ORG": ORG, "PRODUCT": PRODUCT}[slot]
    return [rng.choice(pool)], slot


#: The topic of a document (``doc.cats``, exclusive) is the kind of its first
#: sentence; a second sentence may be of another kind, so words alone mislead.
TOPICS = ["MEETING", "TRAVEL", "MEETING", "WORK", "SHOPPING"]

#: The rare topic: help-desk notes, which read like meeting notes. Given the
#: verb of a MEETING first sentence, the odds that the note is SUPPORT: a
#: weak, shared cue (meetings "help" and "call" too), a matter of odds.
SUPPORT = "SUPPORT"
SUPPORT_ODDS = {"helped": 0.3, "called": 0.05}
LABELS = list(dict.fromkeys(TOPICS)) + [SUPPORT]


def topic_of(rng: random.Random, topic: str, verb: str) -> str:
    """The document's topic: its first sentence's kind, or SUPPORT with the odds of the verb."""
    if topic == "MEETING" and rng.random() < SUPPORT_ODDS.get(verb, 0.0):
        return SUPPORT
    return topic


def sentence(rng: random.Random):
    """Words, heads (absolute, within the sentence), deps, entity spans and topic of one sentence."""
    weights, templates = zip(*TEMPLATES)
    k = rng.choices(range(len(templates)), weights)[0]
    template = templates[k]
    words, heads, deps, spans = [], [], [], []
    slot_start = []  # index of the (last) token of each slot, for the heads
    for slot, _, _ in template:
        start = len(words)
        if isinstance(slot, tuple) or slot in ENTITY:
            tokens, label = entity_words(rng, slot)
            words.extend(tokens)
            spans.append((start, len(words), label))
        else:
            pool = {"VERB_MET": VERB_MET, "VERB_CITY": VERB_CITY, "TIME": TIME}.get(slot, [slot])
            words.append(rng.choice(pool))
        slot_start.append((start, len(words) - 1))
    for (slot, head, dep), (start, last) in zip(template, slot_start):
        for i in range(start, last):  # a first name before a surname
            heads.append(last)
            deps.append("compound")
        heads.append(slot_start[head][1] if dep != "ROOT" else last)
        deps.append(dep)
    return words, heads, deps, spans, TOPICS[k]


def document(rng: random.Random):
    words, heads, deps, ents, spaces, sent_starts, topics = [], [], [], [], [], [], []
    for _ in range(rng.choice([1, 2, 2])):
        w, h, d, s, topic = sentence(rng)
        topics.append((topic, w[d.index("ROOT")]))
        offset = len(words)
        words.extend(w)
        heads.extend(offset + x for x in h)
        deps.extend(d)
        ents.extend((offset + a, offset + b, label) for a, b, label in s)
        spaces.extend([True] * (len(w) - 2) + [False, True])  # no space before the final "."
        sent_starts.extend([True] + [False] * (len(w) - 1))
    spaces[-1] = False
    return dict(words=words, spaces=spaces, heads=heads, deps=deps, sent_starts=sent_starts), ents, topics[0]


def to_docs(vocab, n: int, rng: random.Random):
    from spacy.tokens import Doc, Span

    # The topics' own generator, seeded from the state of ``rng`` (a string
    # seed is hashed with SHA-512: the same in every Python 3) without
    # drawing from it.
    topic_rng = random.Random(repr(rng.getstate()))
    docs = []
    for _ in range(n):
        annotation, ents, (topic, verb) = document(rng)
        topic = topic_of(topic_rng, topic, verb)
        doc = Doc(vocab, **annotation)
        doc.ents = [Span(doc, a, b, label=label) for a, b, label in ents]
        doc.cats = {name: float(name == topic) for name in LABELS}
        docs.append(doc)
    return docs


def main(out_dir: Path = Path(__file__).parent) -> None:
    import spacy
    from spacy.tokens import DocBin

    rng = random.Random(SEED)
    nlp = spacy.blank("en")
    for name, n in (("ner_train", N_TRAIN), ("ner_dev", N_DEV)):
        docs = to_docs(nlp.vocab, n, rng)
        DocBin(docs=docs, store_user_data=False).to_disk(out_dir / f"{name}.spacy")
        print(f"{out_dir / f'{name}.spacy'}: {len(docs)} documents")


if __name__ == "__main__":
    main()
