"""Without the ``cli`` extra the command says which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Runs the console script's entry point as if click (or rich) were not installed.
_WITHOUT = """
import sys
sys.modules[{module!r}] = None  # "not installed": importing it raises ModuleNotFoundError
sys.argv = ["shoptoken", "status"]
from shoptoken.cli import main
main()
"""


@pytest.mark.parametrize("module", ["click", "rich"])
def test_missing_cli_extra_names_the_extra(module: str) -> None:
    """The console script without click or rich exits 1 with a one-line install hint."""
    result = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", _WITHOUT.format(module=module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "shoptoken: the command needs the 'cli' extra: pip install 'shoptoken[cli]'"
    )


def test_missing_metrics_extra_names_the_extra() -> None:
    """shoptoken.metrics without prometheus_client raises ImportError naming the extra."""
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "try:\n"
        "    import shoptoken.metrics\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == (
        "shoptoken.metrics needs the 'metrics' extra: pip install 'shoptoken[metrics]'"
    )
