"""llm_bridge tests run offline: nothing may come from the Hugging Face hub."""

import os

# huggingface_hub reads these when it is first imported, so set them before any test module
# imports transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
