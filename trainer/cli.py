"""The trainer's commands (`crit synth`, `crit select`, `crit train`, `crit eval`), registered on the crit group.

Each parses its options into the recipe's config, calls the one function and prints
a short summary with rich. Heavy imports happen inside the recipes.
"""

from __future__ import annotations

import json

import click
from rich.console import Console

from crit.engine.notes.columns import NoteColumns
from crit.engine.options import column_options, device_option
from crit.trainer.synth import PAIR_TYPES

out = Console(highlight=False, soft_wrap=True)


@click.command(name="synth")
@click.argument("notes", required=False)
@click.option("--teacher", default=None,
              help="Teacher model folder (default: the embedded SmolLM2-135M-Instruct), or 'programmatic': "
                   "synthetic notes with answers known by construction.")
@click.option("--db", default="synth.duckdb", show_default=True, help="DuckDB file for the pairs; reruns resume.")
@click.option("--limit", type=int, default=None, help="Only the first N notes (model teacher).")
@click.option("--max-new-tokens", type=int, default=256, show_default=True, help="Generation limit per pair (model teacher).")
@click.option("--criteria", default="criteria/aristotle.crit", show_default=True,
              help="Programmatic teacher: the .crit file whose questions it writes about.")
@click.option("--count", type=int, default=2000, show_default=True, help="Programmatic teacher: notes to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Programmatic teacher: the seed.")
@click.option("--real-share", type=float, default=0.5, show_default=True,
              help="Programmatic teacher: share of notes built on a real note from NOTES.")
@click.option("--exclude", "exclude", multiple=True,
              help="Programmatic teacher: a notes file whose note ids are never used (evaluation notes); repeatable.")
@click.option("--backend", default=None,
              help="Any `crit run` backend as teacher (transformers, openai, vllm, ...): it answers --criteria's "
                   "questions over NOTES through the engine, exactly as the student will be asked.")
@click.option("--model", default=None, help="With --backend: the teacher model (a folder, or the server's model name).")
@click.option("--base-url", default=None, help="With --backend openai: the server, e.g. http://127.0.0.1:8000/v1.")
@click.option("--response-format", default=None, help="With --backend openai: json_schema or json_object.")
@click.option("--concurrency", type=int, default=None, help="With --backend openai: requests in flight.")
@column_options("id_column", "text_column")
@device_option
def synth_command(notes: str | None, teacher: str | None, db: str, limit: int | None, max_new_tokens: int,
                  criteria: str, count: int, seed: int, real_share: float, exclude: tuple[str, ...], backend: str | None,
                  model: str | None, base_url: str | None, response_format: str | None, concurrency: int | None,
                  id_column: str | None, text_column: str | None, device: str) -> None:
    """Have a teacher write question/answer pairs (four types) about notes.

    A model teacher reads each note of NOTES; pairs whose quote is not verbatim in the
    note, whose answer does not fit its type, or that repeat a question of the same note
    are dropped and counted. The programmatic teacher writes its own notes for the
    questions of --criteria (inserting facts into real notes of NOTES, when given).

    \b
    Examples:
        crit synth notes.jsonl --db synth.duckdb --limit 20
        crit synth ../shared/data/mtsamples.jsonl --teacher programmatic --count 2000 \\
            --exclude tests/gold/notes.jsonl --db synth.duckdb
        crit synth notes.jsonl --backend openai --base-url http://127.0.0.1:8000/v1 --model llama-70b
    """
    if backend is not None:
        if notes is None:
            raise click.UsageError("give NOTES: the notes the teacher answers questions over")
        if teacher is not None:
            raise click.UsageError("--teacher and --backend are two kinds of teacher: give one")
        from crit.engine.answering.registry import backends, factory_for
        from crit.trainer.teach import synth_from_backend

        if backend not in backends():
            raise click.UsageError(f"unknown backend {backend!r}: use one of {', '.join(backends())}")
        factory = factory_for(backend, model=model, base_url=base_url, response_format=response_format,
                              concurrency=concurrency, device=device)
        s = synth_from_backend(criteria, notes, factory, db, limit, NoteColumns(id_column=id_column, text_column=text_column).named())
    elif teacher == "programmatic":
        from crit.trainer.generate import GenerateConfig, synth_programmatic
        from crit.trainer.synth import note_pairs

        excluded = tuple(nid for path in exclude for nid, _ in note_pairs(path)[0])
        cfg = GenerateConfig(criteria=criteria, notes=count, seed=seed, real_notes=notes, real_share=real_share,
                             exclude=excluded, columns=NoteColumns(id_column=id_column, text_column=text_column).named())
        s = synth_programmatic(cfg, db)
    else:
        if notes is None:
            raise click.UsageError("give NOTES: the notes the teacher model reads")
        from crit.trainer.synth import SynthConfig, synth

        s = synth(SynthConfig(notes=notes, teacher=teacher, db=db, limit=limit, max_new_tokens=max_new_tokens, device=device or "auto",
                              columns=NoteColumns(id_column=id_column, text_column=text_column).named()))
    out.print(
        f"{s.notes_done} note(s) done, {s.notes_skipped} skipped; {s.pairs_kept} pair(s) kept, "
        f"dropped {json.dumps(s.pairs_dropped)}; {s.seconds:.0f} s -> {db}"
    )


@click.command(name="select")
@click.option("--db", default="synth.duckdb", show_default=True, help="DuckDB file written by `crit synth`.")
@click.option("--out", "out_dir", required=True, help="Folder for train.jsonl and val.jsonl.")
@click.option("--per-type", type=int, default=1000, show_default=True, help="Hardest N pairs kept per type.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Share of notes held out.")
@click.option("--layout", type=click.Choice(["evidence", "note"]), default="evidence", show_default=True,
              help="What the student reads: a few sentences with the quote first (as `crit run` asks), or the whole note.")
@click.option("--types", default=",".join(PAIR_TYPES), show_default=True, help="Pair types kept, comma-separated.")
@click.option("--verify", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="The label check: auto = on for a model teacher, counted only for the programmatic one.")
@click.option("--no-quote", is_flag=True, help="Targets without the supporting quote (ablation).")
def select_command(db: str, out_dir: str, per_type: int, val_fraction: float, layout: str, types: str, verify: str,
                   no_quote: bool) -> None:
    """Keep the hardest pairs per type, split 90/10 by note, export chat-format JSONL.

    \b
    Example:
        crit select --db synth.duckdb --out data/ --per-type 500
    """
    from crit.trainer.select import SelectConfig, select

    kinds = tuple(t.strip() for t in types.split(",") if t.strip())
    unknown = [t for t in kinds if t not in PAIR_TYPES]
    if unknown:
        raise click.UsageError(f"unknown pair type(s) {', '.join(unknown)}: use {', '.join(PAIR_TYPES)}")
    s = select(SelectConfig(db=db, out=out_dir, per_type=per_type, val_fraction=val_fraction, layout=layout,
                            types=kinds, verify=verify, quote=not no_quote))  # type: ignore[arg-type]
    out.print(f"train {s.train} example(s) from {s.train_notes} note(s), val {s.val} from {s.val_notes}; per type {s.per_type}; "
              f"label check dropped {json.dumps(s.dropped)}, disagreed {json.dumps(s.disagreements)} -> {s.out}")


@click.command(name="train")
@click.option("--base", default=None, help="Base model folder (default: the embedded SmolLM2-135M-Instruct).")
@click.option("--data", required=True, help="Folder with train.jsonl (and val.jsonl) from `crit select`.")
@click.option("--out", "out_dir", required=True, help="Adapter folder to write.")
@click.option("--qlora/--no-qlora", default=None, help="4-bit NF4 base with bitsandbytes (default: on with CUDA only).")
@click.option("--max-steps", type=int, default=None, help="Stop after N optimiser steps (overrides --epochs).")
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--r", "rank", type=int, default=8, show_default=True, help="LoRA rank.")
@click.option("--alpha", type=int, default=16, show_default=True, help="LoRA alpha.")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--max-length", type=int, default=2048, show_default=True, help="Longer examples are skipped.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--loop", type=click.Choice(["trainer", "hand"]), default="trainer", show_default=True,
              help="transformers' Trainer, or a plain torch loop over the same batches.")
@device_option
def train_command(base: str | None, data: str, out_dir: str, qlora: bool | None, max_steps: int | None, lr: float,
                  epochs: float, rank: int, alpha: int, batch_size: int, max_length: int, seed: int, loop: str,
                  device: str) -> None:
    """Fine-tune a LoRA adapter (QLoRA with --qlora); loss on the answer tokens only.

    \b
    Example:
        crit train --data data/ --out adapters/smol-r8 --max-steps 200
        crit run criteria/aristotle.crit notes.jsonl --adapter adapters/smol-r8
    """
    from crit.trainer.finetune import TrainConfig, finetune

    cfg = TrainConfig(base=base, data=data, out=out_dir, qlora=qlora, max_steps=max_steps, lr=lr, epochs=epochs,
                      r=rank, alpha=alpha, batch_size=batch_size, max_length=max_length, seed=seed, device=device or "auto",
                      loop=loop)  # type: ignore[arg-type]
    path = finetune(cfg)
    m = json.loads((path / "manifest.json").read_text())["metrics"]
    losses = m["loss_per_step"]
    out.print(f"{m['steps']} step(s), loss {losses[0]:.3f} -> {losses[-1]:.3f}, {m['seconds_per_step']:.2f} s/step -> {path}")


@click.command(name="eval")
@click.argument("gold")
@click.option("--db", "dbs", multiple=True, help="Results store from `crit run` (repeat to compare).")
@click.option("--model", "models", multiple=True, help="Model folder to run over the gold notes ('embedded' for the built-in one).")
@click.option("--adapter", "adapters", multiple=True,
              help="Adapter to run with the embedded model (or with --model, pairwise); 'student' for the "
                   "student shipped with crit.")
@click.option("--boolean-schema", "schemas", multiple=True, type=click.Choice(["enum", "truefalse"]),
              help="Answer schema(s) for boolean questions in direct runs (repeat to compare; default enum).")
@click.option("--notes", default=None, help="Gold notes (default: notes.jsonl beside GOLD; with only --db and no "
              "such file, every labelled note, read from the stores).")
@click.option("--criteria", default="criteria/aristotle.crit", show_default=True, help=".crit file of the gold questions.")
@click.option("--question", "questions", multiple=True, help="Only this gold question (repeatable).")
@click.option("--limit", type=int, default=None, help="Only the first N gold notes.")
@click.option("--out", default="eval.duckdb", show_default=True, help="DuckDB file the eval table is appended to.")
@column_options("id_column", "text_column")
@device_option
def eval_command(gold: str, dbs: tuple[str, ...], models: tuple[str, ...], adapters: tuple[str, ...], schemas: tuple[str, ...],
                 notes: str | None, criteria: str, questions: tuple[str, ...], limit: int | None, out: str,
                 id_column: str | None, text_column: str | None, device: str) -> None:
    """Score answers against a gold set: balanced accuracy, micro-F1, numeric match, 95% CIs.

    \b
    Example:
        crit eval tests/gold/aristotle_gold.jsonl --db results.duckdb --db tuned.duckdb
        crit eval tests/gold/aristotle_gold.jsonl --model embedded --boolean-schema enum --boolean-schema truefalse
        crit eval crit-labels-RUN.jsonl --db results.duckdb --criteria trial.crit   # a report's exported labels
    """
    from crit.trainer.evaluate import EvalConfig, ModelSpec, evaluate, table

    bases: list[str | None] = [None if m == "embedded" else m for m in models]
    if adapters and not bases:
        bases = [None] * len(adapters)
    if adapters and len(adapters) != len(bases):
        raise click.UsageError("give one --adapter per --model, or only --adapter (with the embedded model)")
    from crit.engine.answering.model import resolve_adapter  # "student": the student shipped with crit

    pairs = list(zip(bases, adapters)) if adapters else [(b, None) for b in bases]
    pairs = [(b, resolve_adapter(b, a)) for b, a in pairs]
    specs = [ModelSpec(model=b, adapter=a, boolean_schema=s) for b, a in pairs for s in (schemas or ("enum",))]
    cfg = EvalConfig(gold=gold, notes=notes, columns=NoteColumns(id_column=id_column, text_column=text_column).named(), criteria=criteria, dbs=list(dbs), models=specs,
                     questions=list(questions) or None, limit=limit, out=out, device=device or "auto")
    out_console = Console(highlight=False)
    out_console.print(table(evaluate(cfg)))


@click.command(name="calibrate")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the trust profile (JSON); every outcome goes beside it, as OUT.outcomes.jsonl.")
@click.option("--backend", default="transformers", show_default=True, help="The backend to measure, as `crit run` names it.")
@click.option("--model", default=None, help="Its model (default: the embedded one).")
@click.option("--adapter", default=None, help="A LoRA adapter folder, or 'student' for the student shipped with crit.")
@click.option("--base-url", default=None, help="openai: the server's URL (notes go to it because you chose it).")
@click.option("--set", "sets", nargs=3, multiple=True, metavar="CRITERIA NOTES LABELS",
              help="A labelled set: a .crit file, its notes, and labels in tests/gold's format (a report's exported "
                   "labels too); repeatable. Default: tests/gold's dev notes and the trials benchmark's dev trials.")
@click.option("--infer", is_flag=True, help="Also measure the model reading whole notes where no passage names a "
              "boolean finding (the cell boolean/no-mention, which `infer` and `crit run --infer` use).")
@device_option
def calibrate_command(out: str, backend: str, model: str | None, adapter: str | None, base_url: str | None,
                      sets: tuple[tuple[str, str, str], ...], infer: bool, device: str | None) -> None:
    """Measure where a model's answer beats the rules', and write its trust profile for `crit run --trust`.

    Every labelled question a passage mentions is answered by the rules and by the model; per kind of
    question and reading class of the rules, the model decides only where it won clearly more often than
    it lost (one-sided sign test, 5%). Calibrate on dev data only.

    \b
    Example:
        crit calibrate --out embedded.trust.json
        crit calibrate --adapter student --out student.trust.json
        crit calibrate --set trial.crit notes.jsonl crit-labels-RUN.jsonl --out mine.trust.json
        crit run trial.crit notes.jsonl --db r.duckdb --trust mine.trust.json
    """
    from pathlib import Path

    from rich.table import Table

    from crit.engine.answering.registry import factory_for
    from crit.grammar.errors import CritError
    from crit.trainer.calibrate import LabelledSet, calibrate, default_sets, write_profile

    # Checked before the model runs: a calibration is many minutes of work, never lost for want of a folder.
    if not Path(out).parent.is_dir():
        raise CritError(f"folder '{Path(out).parent}' for the trust profile '{out}' does not exist")
    options = {k: v for k, v in (("model", model), ("adapter", adapter), ("base_url", base_url), ("device", device)) if v}
    factory = factory_for(backend, **options)
    labelled = ([LabelledSet(name=f"{Path(labels).name} ({Path(crit_file).name})", criteria=Path(crit_file), notes=notes,
                             labels=Path(labels)) for crit_file, notes, labels in sets]
                or default_sets(Path.cwd()))
    err = Console(stderr=True, highlight=False)

    def on_note(name: str, done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            err.print(f"{name}: {done}/{total} notes", markup=False)

    profile, outcomes = calibrate(factory, labelled, infer=infer, on_note=on_note)
    write_profile(profile, outcomes, Path(out))
    table = Table(title=f"trust profile of {profile.backend_identity}")
    for column in ("kind", "reading class", "pairs", "model ok", "rules ok", "wins", "losses", "p", "decides"):
        left = column in ("kind", "reading class", "decides")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for c in profile.cells:
        table.add_row(c.kind, c.reading, str(c.pairs), str(c.model_right), str(c.rules_right), str(c.wins),
                      str(c.losses), f"{c.p_value:.3g}", c.decides)
    Console(highlight=False).print(table)
    Console(highlight=False).print(f"{profile.describe()} -> {out}", markup=False)


COMMANDS = (synth_command, select_command, train_command, eval_command, calibrate_command)
