"""Import the scripts of ``local-dev/`` (not a package: its name has a dash) as the scripts see each other.

``python local-dev/<script>.py`` puts local-dev/ on sys.path, so the scripts import one another
as plain sibling modules (``k8s_schemas`` does ``import stack``). The tests do the same: with
local-dev/ on sys.path, ``load("stack")`` and ``k8s_schemas.stack`` are one module object.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

LOCAL_DEV = Path(__file__).resolve().parents[2] / "local-dev"


def load(name: str) -> ModuleType:
    """``local-dev/<name>.py`` as the top-level module ``<name>`` (imported once)."""
    if str(LOCAL_DEV) not in sys.path:
        sys.path.append(str(LOCAL_DEV))  # last: a script never shadows an installed package
    module = importlib.import_module(name)
    assert Path(module.__file__ or "").resolve().parent == LOCAL_DEV, f"{name} is not local-dev/{name}.py: {module}"
    return module
