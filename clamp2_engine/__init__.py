"""clamp2-engine: CLaMP 2 multimodal, multilingual music retrieval as a fast, installable system."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from clamp2_engine.pretrained import M3, CLaMP2, LoadOptions, ModelIdentity, load


def __getattr__(name: str):
    # lazy: `import clamp2_engine` stays cheap (no torch) for the CLI and light tools
    if name in {"CLaMP2", "M3", "LoadOptions", "ModelIdentity", "load"}:
        from clamp2_engine import pretrained

        return getattr(pretrained, name)
    raise AttributeError(name)


__all__ = ["CLaMP2", "M3", "LoadOptions", "ModelIdentity", "__version__", "load"]
