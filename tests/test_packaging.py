"""What a plain ``pip install`` gets: the license, one version, typing, the example configs.

The wheel is built from the sdist, as an index would build it, with the
setuptools of the test environment (no network).
"""
import configparser
import email
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import thinc_losses_plus
from thinc_losses_plus import about

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["setup.cfg", "setup.py", "pyproject.toml", "MANIFEST.in", "LICENSE", "README.md"]


def setup_cfg():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg", encoding="utf8")
    return parser


def test_license_is_mit_and_declared():
    text = (ROOT / "LICENSE").read_text(encoding="utf8")
    assert text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in text
    metadata = setup_cfg()["metadata"]
    assert metadata["license"] == "MIT" and metadata["license_files"].split() == ["LICENSE"]
    assert "License :: OSI Approved :: MIT License" in metadata["classifiers"]


def test_the_version_is_written_once():
    assert setup_cfg()["metadata"]["version"] == "attr: thinc_losses_plus.about.__version__"
    assert thinc_losses_plus.__version__ is about.__version__
    assert version("thinc-losses-plus") == about.__version__, "reinstall: pip install -e ."


def test_classifiers_say_python_versions_and_typing():
    metadata = setup_cfg()["metadata"]
    classifiers = metadata["classifiers"].split("\n")
    low = setup_cfg()["options"]["python_requires"].strip()
    assert low == ">=3.9" and "Programming Language :: Python :: 3.9" in classifiers
    assert "Typing :: Typed" in classifiers and (ROOT / "thinc_losses_plus" / "py.typed").exists()


def test_importing_the_package_loads_neither_spacy_nor_its_cli():
    code = (
        "import sys, thinc_losses_plus, thinc_losses_plus.cli; "
        "bad = sorted(m for m in ('spacy', 'typer', 'thinc_losses_plus.spacy_cli') if m in sys.modules); "
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT.parent)
    assert done.returncode == 0, done.stderr


def _build(tmp_path):
    """sdist from a copy of the sources, then a wheel from the unpacked sdist."""
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "thinc_losses_plus", src / "thinc_losses_plus", ignore=shutil.ignore_patterns("__pycache__"))
    for group in ("losses", "spacy"):
        (src / "configs" / group).mkdir(parents=True)
        for path in (ROOT / "configs" / group).glob("*.cfg"):
            shutil.copy(path, src / "configs" / group / path.name)
    out = tmp_path / "dist"

    def backend(call, cwd):
        script = f"import sys; from setuptools import build_meta as b; print(b.{call}(sys.argv[1]))"
        done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, cwd=cwd)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return out / done.stdout.strip().splitlines()[-1]

    sdist = backend("build_sdist", src)
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(tmp_path / "unpacked", filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            archive.extractall(tmp_path / "unpacked")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    return sdist, backend("build_wheel", unpacked)


@pytest.mark.slow
def test_sdist_and_wheel_ship_the_license_typing_and_every_example_config(tmp_path):
    sdist, wheel = _build(tmp_path)
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "setup.py", "thinc_losses_plus/py.typed"} <= in_sdist
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (info,) = {n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA")}
        metadata = email.message_from_bytes(archive.read(f"{info}/METADATA"))
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert any(n.startswith(f"{info}/") and n.endswith("/LICENSE") for n in names), "LICENSE missing from the wheel"
    assert "thinc_losses_plus/py.typed" in names
    for group in ("losses", "spacy"):
        for path in (ROOT / "configs" / group).glob("*.cfg"):
            assert f"thinc_losses_plus/configs/{group}/{path.name}" in names, f"{group}/{path.name} not in the wheel"
    assert not any(n.endswith(".spacy") for n in names)  # the corpus stays in the repository
    assert metadata["Version"] == about.__version__
    assert metadata["License"] == "MIT" or metadata["License-Expression"] == "MIT"
    assert "License :: OSI Approved :: MIT License" in metadata.get_all("Classifier")
    assert "[spacy_cli]\nlosses = thinc_losses_plus.spacy_cli:losses_cli" in entry_points
