"""Every docstring example of the installed package runs (as ``--doctest-modules`` would by path)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = (
    "driftwarden.daemon",
    "driftwarden.detectors",
    "driftwarden.policies",
    "driftwarden.deploy",
    "driftwarden.examples",
)
# Modules that run something when imported (``python -m`` entry points) are not imported here.
ENTRY_POINTS = frozenset({"driftwarden.daemon.cli.__main__"})


def _modules() -> list[str]:
    names = []
    for pkg in PACKAGES:
        names.append(pkg)
        names += [m.name for m in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + ".")]
    return sorted(n for n in names if n not in ENTRY_POINTS)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"
