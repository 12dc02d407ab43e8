"""Import the scripts of ``local-dev/`` (not a package: its name has a dash) by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

LOCAL_DEV = Path(__file__).resolve().parents[2] / "local-dev"


def load(name: str) -> ModuleType:
    """``local-dev/<name>.py`` as module ``local_dev_<name>`` (imported once)."""
    module_name = f"local_dev_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LOCAL_DEV / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
