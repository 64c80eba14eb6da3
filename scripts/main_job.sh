#!/usr/bin/env bash
# The main job: a real `spacy train` of a text classifier whose loss comes
# from the config (class-weighted cross-entropy through `textcat_with_loss`),
# on the corpus shipped in configs/spacy/corpus, then load the trained model.
#   bash scripts/main_job.sh [OUTPUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-training/textcat_class_weights}
python -m spacy train configs/spacy/textcat_class_weights.cfg --output "$out"
python - "$out/model-best" <<'PY'
import sys

import spacy

nlp = spacy.load(sys.argv[1])
loss = nlp.get_pipe("textcat").loss
doc = nlp("The striker scored twice before half time.")
best = max(doc.cats, key=doc.cats.get)
print(f"loaded {sys.argv[1]}: loss {type(loss).__name__} (class_weights {loss.class_weights}); "
      f"best label {best} ({doc.cats[best]:.2f})")
PY
