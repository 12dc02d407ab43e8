"""Where torch keeps its compile cache, set before torch is imported (the engine and the bundle builder)."""

from __future__ import annotations

import os


def use_torch_cache_dir(folder: str) -> None:
    """Point torch's compile cache (TorchInductor, Triton) at ``folder``; call it before torch is imported.

    ``torch._dynamo``, which lightning (hence pyannote.audio) imports, resolves that folder
    at import time; without ``TORCHINDUCTOR_CACHE_DIR`` torch names it after
    ``getpass.getuser()``, which raises ``KeyError`` for a UID without a passwd entry, as
    OpenShift's arbitrary UIDs are on runtimes that add none (pytorch/pytorch#140765,
    fixed upstream after torch 2.11). The variable is torch's only way in.
    """
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
