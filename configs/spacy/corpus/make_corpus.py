"""Write the small training corpus of the spaCy example configs.

    python configs/spacy/corpus/make_corpus.py

Generates, deterministically (fixed seed, no download), short English
documents of one or two sentences about one of four topics, each annotated
with

* ``doc.cats``: the topic, exclusive (SPORTS, FOOD, WEATHER, TECH), with an
  imbalanced distribution (about 50/27/15/8 %) — the case class weights and
  focal loss are for;
* Penn Treebank tags (``token.tag_``), universal POS (``token.pos_``) and
  morphological features (``token.morph``);
* sentence starts;
* lemmas (``token.lemma_``, from the rules and tables below), for the
  trainable lemmatizer;
* spans under ``doc.spans["sc"]``, for the span categorizer: ``PERSON``
  (names), ``ROLE`` (agent nouns: "coach", "fans") and ``TIME`` ("the
  morning"), about 41/35/24 % of the spans.

It writes ``train.spacy`` and ``dev.spacy`` next to this file. The sentences
come from a small grammar whose templates and word lists are below, so the
corpus can be read, audited and regenerated.
"""

import random
from pathlib import Path
from typing import Dict, List, Tuple

SEED = 20240521
N_TRAIN = 400
N_DEV = 120
TOPICS = {"SPORTS": 0.50, "FOOD": 0.27, "WEATHER": 0.15, "TECH": 0.08}

# Penn Treebank tag -> (universal POS, morphological features)
TAG_MAP: Dict[str, Tuple[str, str]] = {
    "DT": ("DET", ""),
    "NN": ("NOUN", "Number=Sing"),
    "NNS": ("NOUN", "Number=Plur"),
    "NNP": ("PROPN", "Number=Sing"),
    "JJ": ("ADJ", "Degree=Pos"),
    "RB": ("ADV", ""),
    "IN": ("ADP", ""),
    "PRP": ("PRON", "Case=Nom|PronType=Prs"),
    "VBD": ("VERB", "Tense=Past|VerbForm=Fin"),
    "VBZ": ("VERB", "Number=Sing|Person=3|Tense=Pres|VerbForm=Fin"),
    "VBP": ("VERB", "Tense=Pres|VerbForm=Fin"),
    "VB": ("VERB", "VerbForm=Inf"),
    "MD": ("AUX", "VerbType=Mod"),
    "CC": ("CCONJ", "ConjType=Cmp"),
    "CD": ("NUM", "NumType=Card"),
    ".": ("PUNCT", "PunctType=Peri"),
}

SHARED = {
    "DT": ["the", "a", "this", "that", "every"],
    "DTS": ["the", "these", "those", "some"],  # before plural nouns
    "NNP": ["Maria", "Tom", "Aisha", "Kenji", "Laura", "Diego", "Priya", "Sam"],
    "PRP": ["we", "they", "I", "you"],
    "RB": ["really", "quite", "very", "surprisingly", "rather"],
    "RBE": ["again", "yesterday", "today", "early", "twice"],  # sentence-final adverbs
    "RBF": ["again", "today", "soon", "tomorrow"],  # ... after a modal verb
    "IN": ["in", "on", "after", "before", "during"],
    "INP": ["with", "for"],  # before a person
    "CD": ["two", "three", "four", "ten", "twenty"],
    "MD": ["will", "can", "should", "might"],
    "BE": ["was", "seemed", "looked"],
    "CC": ["and"],
    "TIME": ["morning", "evening", "weekend", "night", "afternoon", "week"],
    ".": ["."],
}

# Slot -> the tag its words get (slots not listed are tags themselves).
SLOT_TAGS = {"DTS": "DT", "RBE": "RB", "RBF": "RB", "INP": "IN", "BE": "VBD", "TIME": "NN", "AG": "NN", "AGS": "NNS"}

LEXICON: Dict[str, Dict[str, List[str]]] = {
    "SPORTS": {
        "AG": ["coach", "striker", "referee", "goalkeeper", "captain"],
        "AGS": ["fans", "players", "runners", "coaches", "referees"],
        "NN": ["team", "match", "goal", "stadium", "league", "season", "race", "ball", "final"],
        "NNS": ["points", "medals", "goals", "tickets", "matches", "trophies"],
        "JJ": ["young", "fast", "tired", "loud", "strong", "brilliant", "nervous"],
        "VBD": ["won", "lost", "watched", "kicked", "scored", "missed", "celebrated", "defended"],
        "VBZ": ["wins", "loses", "watches", "plays", "scores", "defends"],
        "VBP": ["win", "watch", "play", "cheer", "coach"],
        "VB": ["win", "watch", "play", "defend", "lose"],
    },
    "FOOD": {
        "AG": ["chef", "cook", "waiter", "baker", "guest"],
        "AGS": ["chefs", "cooks", "guests", "waiters", "bakers"],
        "NN": ["soup", "bread", "cake", "salad", "recipe", "sauce", "dinner", "pasta", "pie", "curry"],
        "NNS": ["apples", "onions", "cookies", "dishes", "spices", "tomatoes", "noodles"],
        "JJ": ["spicy", "fresh", "sweet", "warm", "crispy", "delicious", "salty"],
        "VBD": ["cooked", "baked", "tasted", "served", "ordered", "sliced", "ate"],
        "VBZ": ["cooks", "bakes", "tastes", "serves", "orders"],
        "VBP": ["cook", "bake", "eat", "serve", "taste"],
        "VB": ["cook", "bake", "eat", "serve", "taste"],
    },
    "WEATHER": {
        "AG": ["forecaster", "farmer", "pilot", "sailor", "meteorologist"],
        "AGS": ["forecasters", "farmers", "pilots", "sailors", "meteorologists"],
        "NN": ["rain", "storm", "wind", "snow", "forecast", "sky", "fog", "temperature", "sunshine", "heat"],
        "NNS": ["clouds", "showers", "winds", "temperatures", "floods"],
        "JJ": ["cold", "humid", "cloudy", "freezing", "sunny", "heavy", "mild"],
        "VBD": ["predicted", "reported", "feared", "expected", "measured", "forecast"],
        "VBZ": ["predicts", "reports", "expects", "measures"],
        "VBP": ["expect", "fear", "predict", "report"],
        "VB": ["predict", "expect", "report", "measure"],
    },
    "TECH": {
        "AG": ["engineer", "developer", "tester", "technician", "admin"],
        "AGS": ["users", "developers", "engineers", "testers", "technicians"],
        "NN": ["laptop", "phone", "server", "update", "network", "battery", "screen", "app", "database"],
        "NNS": ["files", "bugs", "chips", "servers", "passwords", "apps"],
        "JJ": ["new", "slow", "digital", "wireless", "secure", "broken"],
        "VBD": ["installed", "released", "downloaded", "fixed", "tested", "rebooted"],
        "VBZ": ["installs", "releases", "downloads", "fixes", "tests"],
        "VBP": ["install", "test", "fix", "update"],
        "VB": ["install", "fix", "update", "test"],
    },
}

# A template is a list of slots: a tag drawn from the topic's words, else a
# shared slot (``SHARED``; its tag from ``SLOT_TAGS`` or the slot itself).
TEMPLATES = [
    ["DT", "JJ", "AG", "VBD", "DT", "NN", "."],
    ["NNP", "VBZ", "DT", "JJ", "NN", "IN", "DT", "TIME", "."],
    ["DT", "NN", "BE", "RB", "JJ", "IN", "DT", "TIME", "."],
    ["PRP", "VBD", "DT", "NN", "INP", "NNP", "."],
    ["DTS", "AGS", "VBD", "DT", "NN", "RBE", "."],
    ["NNP", "CC", "NNP", "VBD", "CD", "NNS", "."],
    ["DTS", "AGS", "MD", "VB", "DT", "JJ", "NN", "."],
    ["PRP", "VBP", "DT", "NN", "IN", "DT", "TIME", "."],
    ["DTS", "JJ", "AGS", "VBD", "DT", "NN", "RBE", "."],
    ["NNP", "VBD", "DTS", "JJ", "NNS", "IN", "DT", "TIME", "."],
    ["PRP", "MD", "VB", "DTS", "NNS", "RBF", "."],
    ["DT", "AG", "VBD", "DTS", "JJ", "NNS", "INP", "NNP", "."],
]


# Lemmas: a table for the past tenses and the irregular plurals, rules for the rest.
VBD_LEMMAS = {
    "won": "win", "lost": "lose", "watched": "watch", "kicked": "kick", "scored": "score", "missed": "miss",
    "celebrated": "celebrate", "defended": "defend", "cooked": "cook", "baked": "bake", "tasted": "taste",
    "served": "serve", "ordered": "order", "sliced": "slice", "ate": "eat", "predicted": "predict",
    "reported": "report", "feared": "fear", "expected": "expect", "measured": "measure", "forecast": "forecast",
    "installed": "install", "released": "release", "downloaded": "download", "fixed": "fix", "tested": "test",
    "rebooted": "reboot", "was": "be", "seemed": "seem", "looked": "look",
}
PLURAL_LEMMAS = {"cookies": "cookie", "trophies": "trophy", "tomatoes": "tomato"}


def lemma(word: str, tag: str) -> str:
    lower = word if tag == "NNP" or word == "I" else word.lower()
    if tag == "VBD":
        return VBD_LEMMAS[lower]
    if tag in ("NNS", "VBZ"):
        if lower in PLURAL_LEMMAS:
            return PLURAL_LEMMAS[lower]
        return lower[:-2] if lower.endswith(("ches", "shes", "xes")) else lower[:-1]
    return "a" if lower == "an" else lower


# Spans: slot -> label (a TIME span also covers the determiner before it).
SPAN_SLOTS = {"AG": "ROLE", "AGS": "ROLE", "NNP": "PERSON", "TIME": "TIME"}


def sentence(rng: random.Random, topic: str) -> List[Tuple[str, str, str]]:
    words = []
    for slot in rng.choice(TEMPLATES):
        pool = LEXICON[topic].get(slot) or SHARED[slot]
        words.append((rng.choice(pool), SLOT_TAGS.get(slot, slot), slot))
    for i, (word, tag, slot) in enumerate(words[:-1]):
        if word == "a" and words[i + 1][0][0] in "aeiou":
            words[i] = ("an", tag, slot)
    first, tag, slot = words[0]
    words[0] = (first if tag == "NNP" else first[0].upper() + first[1:], tag, slot)
    return words


def document(rng: random.Random, topic: str):
    """Words, spaces, tags, POS, morphs, lemmas, sentence starts and spans of one document."""
    sentences = [sentence(rng, topic) for _ in range(rng.choice([1, 1, 2]))]
    words, spaces, tags, pos, morphs, lemmas, sent_starts, spans = [], [], [], [], [], [], [], []
    for sent in sentences:
        for i, (word, tag, slot) in enumerate(sent):
            if slot in SPAN_SLOTS:
                start = len(words) - 1 if slot == "TIME" else len(words)
                spans.append((start, len(words) + 1, SPAN_SLOTS[slot]))
            words.append(word)
            tags.append(tag)
            pos.append(TAG_MAP[tag][0])
            morphs.append(TAG_MAP[tag][1])
            lemmas.append(lemma(word, tag))
            sent_starts.append(i == 0)
            spaces.append(i + 1 < len(sent) and sent[i + 1][1] != ".")
        spaces[-1] = True
    spaces[-1] = False
    return dict(
        words=words,
        spaces=spaces,
        tags=tags,
        pos=pos,
        morphs=morphs,
        lemmas=lemmas,
        sent_starts=sent_starts,
        spans=spans,
    )


def generate(n: int, rng: random.Random) -> List[Tuple[str, dict]]:
    topics, weights = zip(*TOPICS.items())
    return [(topic, document(rng, topic)) for topic in rng.choices(topics, weights, k=n)]


def to_docs(vocab, generated):
    from spacy.tokens import Doc, Span

    docs = []
    for topic, annotation in generated:
        annotation = dict(annotation)
        spans = annotation.pop("spans")
        doc = Doc(vocab, **annotation)
        doc.cats = {name: float(name == topic) for name in TOPICS}
        doc.spans["sc"] = [Span(doc, start, end, label=label) for start, end, label in spans]
        docs.append(doc)
    return docs


def main(out_dir: Path = Path(__file__).parent) -> None:
    import spacy
    from spacy.tokens import DocBin

    rng = random.Random(SEED)
    nlp = spacy.blank("en")
    for name, n in (("train", N_TRAIN), ("dev", N_DEV)):
        docs = to_docs(nlp.vocab, generate(n, rng))
        DocBin(docs=docs, store_user_data=False).to_disk(out_dir / f"{name}.spacy")
        print(f"{out_dir / f'{name}.spacy'}: {len(docs)} documents")


if __name__ == "__main__":
    main()
