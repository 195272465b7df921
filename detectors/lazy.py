"""Importing heavy libraries only where they are used, so the data path stays small.

``driftwarden validate`` should not pay for River and SciPy, and the daemon's memory floor should
not hold libraries it never calls: ``import river.drift`` runs the package's ``__init__``, which
imports its datasets and retraining helpers and with them pandas, SciPy's statistics and
scikit-learn — 166 MB of RSS for a detector class that needs 12.

>>> special = lazy_module("scipy.special")
>>> float(special.ndtri(0.5))
0.0
>>> import_leaf("river.drift.adwin").ADWIN.__name__
'ADWIN'
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """``name`` as a module object whose import runs at its first attribute access (the stdlib recipe)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def import_leaf(name: str) -> ModuleType:
    """Import module ``name`` without running the ``__init__`` of its not-yet-imported parent
    packages (``river.drift`` for ``river.drift.adwin``; ``cel``, whose ``__init__`` loads an
    interactive shell, for the compiled ``cel.cel``).

    The parents stand in as empty package objects while the module loads and are removed from
    ``sys.modules`` afterwards, so a later ``import river.drift`` still runs the real ``__init__``
    (which finds the leaf already imported and reuses it: the classes are the same objects).
    The leaf's own imports run as usual. Meant for the main thread: another thread importing a
    stood-in parent at that moment would see the empty package.
    """
    if name in sys.modules:
        return sys.modules[name]
    parts = name.split(".")
    stand_ins: list[str] = []
    try:
        for i in range(1, len(parts)):
            package = ".".join(parts[:i])
            if package not in sys.modules:
                spec = importlib.util.find_spec(package)
                if spec is None:
                    raise ImportError(f"no module named {package!r}")
                sys.modules[package] = importlib.util.module_from_spec(spec)
                stand_ins.append(package)
        return importlib.import_module(name)
    finally:
        for package in stand_ins:
            sys.modules.pop(package, None)
