"""Backends: every test taking ``xp`` runs on numpy, and on cupy when a GPU is present."""
import numpy
import pytest


def _backends():
    backends = [pytest.param(numpy, id="numpy")]
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            backends.append(pytest.param(cupy, id="cupy"))
    except Exception:  # no cupy, or no device: numpy only
        pass
    return backends


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS)
def xp(request):
    return request.param


def to_numpy(x):
    """Host copy of an array (numpy or cupy)."""
    return x.get() if hasattr(x, "get") else numpy.asarray(x)
