"""Golden values: the frozen numbers of every released calculator version.

``tests/golden/<Name.vN>.json`` stores, for each battery case of that name,
its float64 inputs and the loss and gradient they gave when the version was
released. ``test_battery.py::test_golden`` recomputes them; a released
version whose numbers move fails the suite. Pin a new version with

    python tests/golden_values.py [NAME ...]   # pins cases that have no entry yet

Existing entries are never rewritten (a released version is frozen) unless
``--force`` is given, for a version that has not been released yet.
"""
import json
import pathlib
import sys

import numpy
from thinc.types import Ragged

HERE = pathlib.Path(__file__).parent
GOLDEN_DIR = HERE / "golden"
GOLDEN_N = 4


def encode(obj):
    if isinstance(obj, Ragged):
        return {"ragged": encode(obj.dataXd), "lengths": numpy.asarray(obj.lengths).tolist()}
    if isinstance(obj, tuple):
        return {"tuple": [encode(o) for o in obj]}
    if isinstance(obj, list):
        return {"list": [encode(o) for o in obj]}
    if isinstance(obj, numpy.ndarray):
        return {"array": obj.tolist(), "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, (numpy.integer, numpy.floating)):
        return obj.item()
    return obj


def decode(obj):
    if isinstance(obj, dict):
        if "ragged" in obj:
            return Ragged(decode(obj["ragged"]), numpy.asarray(obj["lengths"], dtype="int32"))
        if "tuple" in obj:
            return tuple(decode(o) for o in obj["tuple"])
        if "list" in obj:
            return [decode(o) for o in obj["list"]]
        if "array" in obj:
            return numpy.asarray(obj["array"], dtype=obj["dtype"]).reshape(obj["shape"])
    return obj


def path_for(name):
    return GOLDEN_DIR / f"{name}.json"


def compute(case, guesses, truths):
    grad, loss = case.build()(guesses, truths)
    return grad, loss


def write(names=(), force=False):
    sys.path.insert(0, str(HERE))
    from battery import to_host
    from cases import all_cases

    by_name = {}
    for case in all_cases():
        by_name.setdefault(case.name, []).append(case)
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, cases in sorted(by_name.items()):
        if names and name not in names:
            continue
        path = path_for(name)
        entries = {} if force or not path.exists() else json.loads(path.read_text())
        new = [case for case in cases if case.id not in entries]
        if not new:
            continue
        for case in new:
            rng = numpy.random.default_rng(1234)
            guesses, truths = case.make(rng, GOLDEN_N)
            grad, loss = compute(case, guesses, truths)
            entries[case.id] = {
                "settings": case.settings,
                "guesses": encode(guesses),
                "truths": encode(truths),
                "loss": loss,
                "grad": encode(to_host(grad)),
            }
        path.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
        print(f"{path.relative_to(HERE.parent)}: pinned {[c.id for c in new]}")


if __name__ == "__main__":
    args = sys.argv[1:]
    write(names=[a for a in args if not a.startswith("--")], force="--force" in args)
