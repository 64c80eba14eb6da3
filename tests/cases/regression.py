"""Battery cases of the regression family, with slow float64 references.

References work one element at a time with ``math`` straight from the
formulas (PyTorch's documentation), independently of the package's code.
"""
import math

import numpy

from battery import Case

C = 4
LOW_PRECISION = ("float16", "float32", "float64")


# Inputs ---------------------------------------------------------------------


def pairs(scale=1.0, c=C):
    def make(rng, n):
        return rng.normal(scale=scale, size=(n, c)), rng.normal(scale=scale, size=(n, c))

    return make


def vectors(rng, n):
    return rng.normal(size=n), rng.normal(size=n)


def rates(rng, n):
    return rng.uniform(0.2, 4.0, size=(n, C)), rng.integers(0, 7, size=(n, C)).astype("float64")


def log_rates(rng, n):
    return rng.normal(scale=1.0, size=(n, C)), rng.integers(0, 7, size=(n, C)).astype("float64")


def gaussian(var_cols):
    def make(rng, n):
        mean = rng.normal(size=(n, C))
        shape = (n,) if var_cols is None else (n, var_cols)
        var = rng.uniform(0.3, 2.0, size=shape)
        return (mean, var), rng.normal(size=(n, C))

    return make


def gaussian_vector(rng, n):
    return (rng.normal(size=n), rng.uniform(0.3, 2.0, size=n)), rng.normal(size=n)


# References -----------------------------------------------------------------


def rows(guesses, truths):
    g = numpy.asarray(guesses, dtype="float64")
    t = numpy.asarray(truths, dtype="float64")
    if g.ndim == 1:
        g, t = g[:, None], t[:, None]
    return [(list(gr), list(tr)) for gr, tr in zip(g, t)]


def elementwise(f):
    def reference(guesses, truths, settings):
        return [sum(f(x, y, settings) for x, y in zip(gr, tr)) for gr, tr in rows(guesses, truths)]

    return reference


def huber(x, y, s):
    a, delta = abs(x - y), s.get("delta", 1.0)
    return 0.5 * a * a if a < delta else delta * (a - 0.5 * delta)


def smooth_l1(x, y, s):
    a, beta = abs(x - y), s.get("beta", 1.0)
    return 0.5 * a * a / beta if a < beta else a - 0.5 * beta


def poisson(x, y, s):
    if s.get("from_logits", False):
        loss = math.exp(x) - y * x
    else:
        loss = x - y * math.log(x + s.get("eps", 1e-8))
    if s.get("full", False) and y > 1:
        loss += y * math.log(y) - y + 0.5 * math.log(2 * math.pi * y)
    return loss


def ref_gaussian(guesses, truths, settings):
    mean, var = guesses
    mean = numpy.asarray(mean, dtype="float64")
    truths = numpy.asarray(truths, dtype="float64")
    var = numpy.asarray(var, dtype="float64")
    if mean.ndim == 1:
        mean, truths, var = mean[:, None], truths[:, None], var[:, None]
    elif var.ndim == 1:
        var = var[:, None]
    eps, full = settings.get("eps", 1e-6), settings.get("full", False)
    out = []
    for i in range(mean.shape[0]):
        total = 0.0
        for j in range(mean.shape[1]):
            v = max(var[i, j if var.shape[1] > 1 else 0], eps)
            total += 0.5 * (math.log(v) + (mean[i, j] - truths[i, j]) ** 2 / v)
            if full:
                total += 0.5 * math.log(2 * math.pi)
        out.append(total)
    return out


ref_l2 = elementwise(lambda x, y, s: 0.5 * (x - y) ** 2)
ref_l1 = elementwise(lambda x, y, s: abs(x - y))
ref_log_cosh = elementwise(lambda x, y, s: math.log(math.cosh(x - y)))


# Cases ----------------------------------------------------------------------

CASES = [
    Case("L2Distance.v2", pairs(), reference=ref_l2, dtypes=LOW_PRECISION),
    Case("L2Distance.v2", vectors, id="one-value-per-example", reference=ref_l2),
    Case("L2Distance.v2", pairs(c=1), id="one-column", reference=ref_l2),
    Case("L1Distance.v1", pairs(), reference=ref_l1, dtypes=LOW_PRECISION),
    Case("L1Distance.v1", vectors, id="one-value-per-example", reference=ref_l1),
    Case("Huber.v1", pairs(), reference=elementwise(huber), dtypes=LOW_PRECISION),
    Case("Huber.v1", pairs(), id="delta=0.3", settings={"delta": 0.3}, reference=elementwise(huber)),
    Case("Huber.v1", pairs(scale=3.0), id="delta=2.5", settings={"delta": 2.5}, reference=elementwise(huber)),
    Case("SmoothL1.v1", pairs(), reference=elementwise(smooth_l1), dtypes=LOW_PRECISION),
    Case("SmoothL1.v1", pairs(), id="beta=0.4", settings={"beta": 0.4}, reference=elementwise(smooth_l1)),
    Case("SmoothL1.v1", pairs(), id="beta=0", settings={"beta": 0.0}, reference=ref_l1),
    Case("LogCosh.v1", pairs(), reference=ref_log_cosh, dtypes=LOW_PRECISION),
    Case("LogCosh.v1", pairs(scale=8.0), id="wide", reference=ref_log_cosh),
    Case("PoissonNLL.v1", rates, id="rates", reference=elementwise(poisson), dtypes=LOW_PRECISION),
    Case(
        "PoissonNLL.v1",
        rates,
        id="rates-full-eps",
        settings={"full": True, "eps": 0.01},
        reference=elementwise(poisson),
    ),
    Case("PoissonNLL.v1", log_rates, id="log-rates", settings={"from_logits": True}, reference=elementwise(poisson)),
    Case(
        "PoissonNLL.v1",
        log_rates,
        id="log-rates-full",
        settings={"from_logits": True, "full": True},
        reference=elementwise(poisson),
    ),
    Case("GaussianNLL.v1", gaussian(C), id="var-per-element", reference=ref_gaussian, dtypes=LOW_PRECISION),
    Case("GaussianNLL.v1", gaussian(1), id="var-per-row", reference=ref_gaussian),
    Case("GaussianNLL.v1", gaussian(None), id="var-vector", reference=ref_gaussian),
    Case(
        "GaussianNLL.v1",
        gaussian(C),
        id="full-eps=0.5",
        settings={"full": True, "eps": 0.5},
        reference=ref_gaussian,
        gradient="none",
        why="eps=0.5 clamps some variances; as PyTorch, d_var passes straight through the clamp",
    ),
    Case("GaussianNLL.v1", gaussian(C), id="full", settings={"full": True}, reference=ref_gaussian),
    Case("GaussianNLL.v1", gaussian_vector, id="one-value-per-example", reference=ref_gaussian),
]
