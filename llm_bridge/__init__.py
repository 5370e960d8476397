"""llm_bridge: synthesize the paper's preference datasets, DPO-train LLMs on them,
probe the preferences they learn, and hand the numbers to prefjax."""

__version__ = "0.1.0"
