"""llm_bridge: synthesize the paper's preference datasets, DPO-train LLMs on them,
probe the preferences they learn, and hand the numbers to prefjax.

Importing the package is cheap: the names below load their module (and torch, transformers,
TRL) on first use.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "DatasetConfig": "data",
    "make_dataset": "data",
    "save_jsonl": "data",
    "load_jsonl": "data",
    "load_model": "models",
    "ModelNotFoundError": "models",
    "DPOTrainConfig": "train",
    "PRESETS": "train",
    "preset": "train",
    "train_dpo": "train",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'llm_bridge' has no attribute {name!r}")
