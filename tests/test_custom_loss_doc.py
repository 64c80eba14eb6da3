"""docs/custom_losses.md works as written: a user's package, its entry point, check_loss."""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy
import pytest

from thinc_losses_plus.testing import check_loss

DOC = Path(__file__).resolve().parents[1] / "docs" / "custom_losses.md"


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf8"), flags=re.S)


def user_package(tmp_path, code):
    """The doc's code as package ``my_losses``, with the doc's entry point, importable from ``tmp_path``."""
    package = tmp_path / "my_losses"
    package.mkdir()
    (package / "__init__.py").write_text(code, encoding="utf8")
    entry_point = re.search(r"thinc_losses =\n(.*)", blocks("ini")[0]).group(1).strip()
    info = tmp_path / "my_losses-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-losses\nVersion: 0.1\n", encoding="utf8")
    (info / "entry_points.txt").write_text(f"[thinc_losses]\n{entry_point}\n", encoding="utf8")
    return tmp_path


def test_the_example_registers_resolves_and_passes_the_battery(tmp_path):
    (code,) = blocks("python")
    root = user_package(tmp_path, code)
    config = blocks("ini")[1]
    script = textwrap.dedent(
        f"""
        import numpy
        from thinc.api import Config, registry
        from thinc_losses_plus.testing import check_loss
        loss_calc = registry.resolve(Config().from_str({config!r}))["loss"]
        assert type(loss_calc).__module__ == "my_losses", type(loss_calc)
        assert loss_calc.normalize is False
        rng = numpy.random.default_rng(1)
        check_loss(loss_calc, rng.uniform(0, 2, size=(5, 3)), rng.uniform(0, 2, size=(5, 3)))
        print("ok")
        """
    )
    env = {"PYTHONPATH": str(root), "PATH": ""}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_wrong_gradient_in_the_example_is_caught():
    (code,) = blocks("python")
    battery = code.index("# The battery")
    wrong = code[:battery].replace("grad = 2.0 * diff / (1.0 + g)", "grad = 2.0 * diff")
    assert wrong != code[:battery]
    namespace = {}
    exec(compile(wrong, "custom_losses.md", "exec"), namespace)
    rng = numpy.random.default_rng(0)
    with pytest.raises(AssertionError, match="^finite-differences: "):
        check_loss(namespace["SquaredLogError"](), rng.uniform(0, 3, size=(6, 4)), rng.uniform(0, 3, size=(6, 4)))
