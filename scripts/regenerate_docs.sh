#!/usr/bin/env bash
# The docs tooling: regenerate every generated page and section, in the order
# that keeps them consistent. Needs the `spacy`, `test` and `docs` extras
# (spaCy, torch, threadpoolctl, matplotlib). Run on a quiet machine: the
# benchmarks time things side by side, but a loaded machine still widens
# their spread. Never run by the tests (it trains pipelines for minutes).
#
#   bash scripts/regenerate_docs.sh            # everything
#   bash scripts/regenerate_docs.sh api        # only the API reference
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
what=${1:-all}

step() { echo "=== $* ==="; }

if [[ $what == all || $what == api ]]; then
    step "docs/api.md (from the entry points)"
    "$PY" -m thinc_losses_plus.apidocs
fi
if [[ $what == all || $what == benchmarks ]]; then
    step "docs/benchmarks.md: every calculator against Thinc and PyTorch"
    "$PY" benchmarks/run.py
    step "docs/benchmarks.md: the spaCy twins against the built-ins"
    "$PY" benchmarks/spacy_overhead.py
fi
if [[ $what == all || $what == study ]]; then
    step "docs/spacy.md: does a loss for imbalance help?"
    "$PY" scripts/imbalance_study.py
fi
