"""Fine-tune the student: a LoRA (or QLoRA) adapter on the chat examples written by `crit select`.

One recipe, top to bottom (the peft/trl shape): seed, base model, quantisation config
(only when asked; the default with CUDA), LoRA on all linear layers, a training loop whose
loss covers only the answer tokens, then save the adapter alone plus a manifest (base
model, data hash, parameters, loss per step, time).

The loop is transformers' Trainer (`loop="trainer"`) or a plain torch loop over the same
batches (`loop="hand"`); both take the same optimiser settings (AdamW, linear schedule with
warmup, gradient clipping at 1). Trainer is the default, as fast as the hand loop with the
same validation loss (benchmarks/trainer_loop_speed.py; its figures in RESULTS.md).

Why the prompt and the answer are tokenised separately: the engine tokenises the
prompt (chat template with the generation prompt) and the model generates the rest,
ending with end-of-turn. Training on exactly `prompt ids + answer ids + eos`, with the
prompt positions masked (-100), teaches the same continuation the engine asks for.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import random
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crit.engine.options import CommandOptions
from crit.grammar.errors import CritError

IGNORE_INDEX = -100  # positions with this label do not count in the loss (torch cross_entropy default)


class TrainConfig(CommandOptions):
    """Settings of `finetune`; the defaults are the paper's (LoRA r 8, alpha 16, all linear layers, lr 2e-4, 1 epoch)."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="folder with train.jsonl (and val.jsonl) from `crit select`")
    out: str = Field(description="folder the adapter and manifest.json are written to")
    base: str | None = Field(default=None, description="base model folder; None = the embedded SmolLM2-135M (converted)")
    qlora: bool | None = Field(default=None, description="4-bit NF4 base (bitsandbytes); None = only when CUDA is available")
    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    lr: float = Field(default=2e-4, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="stop after this many optimiser steps (overrides epochs)")
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=2048, ge=16, description="examples longer than this (in tokens) are skipped and counted")
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    seed: int = 42
    device: str = "auto"
    loop: Literal["trainer", "hand"] = Field(default="trainer", description="transformers' Trainer, or a plain torch loop")


class Tokenised(BaseModel):
    input_ids: list[int]
    labels: list[int]
    prompt_length: int


def tokenise_example(tokenizer: Any, messages: list[dict[str, str]]) -> Tokenised:
    """Prompt (all turns but the last, with the generation prompt) + answer + end-of-turn; prompt masked."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("an example must end with the assistant's answer")
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return Tokenised(
        input_ids=prompt_ids + answer_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids,
        prompt_length=len(prompt_ids),
    )


def collate(batch: list[Tokenised], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch: padding gets attention 0 and label -100, so it neither attends nor counts."""
    import torch

    width = max(len(x.input_ids) for x in batch)
    ids, labels, mask = [], [], []
    for x in batch:
        pad = width - len(x.input_ids)
        ids.append(x.input_ids + [pad_id] * pad)
        labels.append(x.labels + [IGNORE_INDEX] * pad)
        mask.append([1] * len(x.input_ids) + [0] * pad)
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def read_examples(path: Path) -> list[list[dict[str, str]]]:
    """The `messages` of every line of a chat-format JSONL file."""
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line)["messages"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CritError(f"{path}:{lineno}: expected a JSON object with 'messages'") from None
    return out


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def _mean_loss(model: Any, batches: list[dict[str, Any]], device: str) -> float | None:
    import torch

    if not batches:
        return None
    total = 0.0
    with torch.no_grad():
        for b in batches:
            total += model(**{k: v.to(device) for k, v in b.items()}).loss.item()
    return round(total / len(batches), 4)


def finetune(cfg: TrainConfig) -> Path:
    """Train a LoRA adapter; returns the adapter folder (adapter files + manifest.json).

    Examples (shell):
        crit train --data data/ --out adapters/smol-r8                   # LoRA, 1 epoch
        crit train --base models/llama --data data/ --out adapters/q --qlora --max-steps 500
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crit.engine.answering.model import embedded_model_dir, model_dir, resolve_device, set_threads

    # 1. Seed, device, data.
    t0 = time.perf_counter()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    set_threads()
    device = resolve_device(cfg.device)
    data = Path(cfg.data)
    train_path = data / "train.jsonl"
    if not train_path.is_file():
        raise CritError(f"{train_path}: not found; write it with `crit select --out {cfg.data}`")
    qlora = device.startswith("cuda") if cfg.qlora is None else cfg.qlora

    # 2. Base model (real safetensors: bitsandbytes cannot quantise straight from a GGUF).
    base_dir = embedded_model_dir() if cfg.base is None else model_dir(cfg.base)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    # 3. Quantisation config only when asked for (trl's get_quantization_config shape).
    quant = None
    if qlora:
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if device.startswith("cuda") else torch.float32
        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
        )
    model = AutoModelForCausalLM.from_pretrained(
        base_dir,
        dtype=torch.float32 if device == "cpu" else "auto",
        quantization_config=quant,
        device_map={"": device} if quant is not None else None,
    )
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    else:
        model.to(device)

    # 4. LoRA on every linear layer.
    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()

    # 5. Tokenise; loss only on the answer.
    examples = [tokenise_example(tokenizer, m) for m in read_examples(train_path)]
    too_long = sum(len(x.input_ids) > cfg.max_length for x in examples)
    examples = [x for x in examples if len(x.input_ids) <= cfg.max_length]
    if not examples:
        raise CritError(f"{train_path}: no example fits in max_length={cfg.max_length} tokens ({too_long} too long)")
    val_path = data / "val.jsonl"
    val = [tokenise_example(tokenizer, m) for m in read_examples(val_path)] if val_path.is_file() else []
    val = [x for x in val if len(x.input_ids) <= cfg.max_length]
    val_batches = [collate(val[i : i + cfg.batch_size], tokenizer.pad_token_id) for i in range(0, len(val), cfg.batch_size)]

    steps_per_epoch = math.ceil(len(examples) / (cfg.batch_size * cfg.grad_accum))
    total_steps = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))

    # 6. Train.
    val_before = _mean_loss(model, val_batches, device)
    t_train = time.perf_counter()
    train = _train_with_trainer if cfg.loop == "trainer" else _train_by_hand
    losses = train(cfg, model, examples, tokenizer.pad_token_id, device, total_steps)
    train_seconds = time.perf_counter() - t_train
    model.eval()
    val_after = _mean_loss(model, val_batches, device)

    # 7. Save the adapter only, and what made it.
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    import peft
    import transformers

    from crit.engine.answering.backends.rules import RulesBackend

    manifest = {
        "base_model": str(base_dir),
        "base_name": base_dir.name,
        "data": {
            "train_sha256": _file_hash(train_path),
            "val_sha256": _file_hash(val_path),
            "train_examples": len(examples),
            "skipped_too_long": too_long,
            "val_examples": len(val),
            # The reader that built and checked the data (crit.trainer.verify): a later reader builds other data.
            "reader": RulesBackend.identity,
        },
        "parameters": {**cfg.model_dump(), "qlora": qlora, "device": device},
        "trainable_parameters": trainable,
        "total_parameters": total,
        "metrics": {
            "loop": cfg.loop,
            "loss_per_step": losses,
            "val_loss_before": val_before,
            "val_loss_after": val_after,
            "train_seconds": round(train_seconds, 2),
            "seconds_per_step": round(train_seconds / total_steps, 3),
            "total_seconds": round(time.perf_counter() - t0, 2),
            "steps": total_steps,
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                     "python": platform.python_version()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def _trainable(model: Any) -> list[Any]:
    return [p for p in model.parameters() if p.requires_grad]


def _train_with_trainer(cfg: TrainConfig, model: Any, examples: list[Tokenised], pad_id: int, device: str,
                        total_steps: int) -> list[float]:
    """transformers' Trainer over the tokenised examples; returns the loss of each optimiser step."""
    import tempfile

    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as scratch:  # Trainer wants an output_dir; nothing is saved in it
        args = TrainingArguments(
            output_dir=scratch, max_steps=total_steps, per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, weight_decay=0.0,
            lr_scheduler_type="linear", warmup_steps=int(cfg.warmup_ratio * total_steps), max_grad_norm=1.0,
            optim="adamw_torch", logging_steps=1, save_strategy="no", report_to=[], seed=cfg.seed,
            data_seed=cfg.seed, use_cpu=device == "cpu", dataloader_num_workers=0, remove_unused_columns=False,
            disable_tqdm=True,  # Trainer then prints each step's loss as one line
        )
        trainer = Trainer(model=model, args=args, train_dataset=list(examples),
                          data_collator=lambda batch: collate(batch, pad_id))
        trainer.train()
    return [round(float(e["loss"]), 4) for e in trainer.state.log_history if "loss" in e]


def _train_by_hand(cfg: TrainConfig, model: Any, examples: list[Tokenised], pad_id: int, device: str,
                   total_steps: int) -> list[float]:
    """A plain torch loop: shuffle each epoch, cycle until total_steps; returns each step's loss."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from transformers import get_linear_schedule_with_warmup

    optimiser = torch.optim.AdamW(_trainable(model), lr=cfg.lr, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimiser, int(cfg.warmup_ratio * total_steps), total_steps)
    losses: list[float] = []
    model.train()
    order: list[int] = []
    rng = random.Random(cfg.seed)
    with Progress(
        TextColumn("train"), BarColumn(), TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]}"),
        TimeRemainingColumn(), transient=True,
    ) as progress:
        task = progress.add_task("train", total=total_steps, loss="-")
        for _step in range(total_steps):
            step_loss = 0.0
            for _ in range(cfg.grad_accum):
                if len(order) < cfg.batch_size:
                    fresh = list(range(len(examples)))
                    rng.shuffle(fresh)
                    order.extend(fresh)
                batch = collate([examples[i] for i in order[: cfg.batch_size]], pad_id)
                del order[: cfg.batch_size]
                loss = model(**{k: v.to(device) for k, v in batch.items()}).loss / cfg.grad_accum
                loss.backward()
                step_loss += loss.item()
            torch.nn.utils.clip_grad_norm_(_trainable(model), 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            losses.append(round(step_loss, 4))
            progress.update(task, advance=1, loss=f"{step_loss:.3f}")
    return losses
