"""Evaluate answers against the gold set: per question, pooled, with bootstrap 95% intervals.

Sources of answers, several side by side:
- results stores written by `crit run` (one column per model/adapter identity in each);
- a model (and adapter) run directly over the gold notes with the transformers backend,
  optionally with the boolean answer schema swapped for the true/false/null variant.

Metrics (crit.trainer.metrics), per source:
- each boolean question: balanced accuracy over present / absent / not mentioned
  ("not mentioned" is its own class; an error row is a wrong answer);
- all boolean decisions pooled: micro-F1 of "present" (not accuracy);
- each numeric question and pooled: exact and within-5% match, missing values included
  (an error row counts as a wrong stated value);
- the share of error rows.
Results go to a rich table and to the `eval` table of a DuckDB file.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crit.engine.options import CommandOptions
from crit.grammar.errors import CritError
from crit.trainer import metrics

BooleanSchema = Literal["enum", "truefalse"]
ERROR = "error"  # the boolean label of an error row or a missing answer
_NUMERIC_ERROR = math.inf  # a numeric error row: wrong against any gold value, never "missing"


class ModelSpec(BaseModel):
    """A model to run over the gold notes."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None  # None = the embedded SmolLM2-135M
    adapter: str | None = None
    boolean_schema: BooleanSchema = "enum"
    label: str | None = None
    # "evidence": the model is asked as `crit run --policy model` asks it (passages, quote first);
    # "note": the whole note and the whole-note schema (the true/false/null variant needs it).
    layout: Literal["evidence", "note"] = "evidence"

    def name(self) -> str:
        if self.label:
            return self.label
        base = Path(self.model).name if self.model else "embedded"
        adapter = f"+{Path(self.adapter).name}" if self.adapter else ""
        return f"{base}{adapter}[{self.boolean_schema}]"


class EvalConfig(CommandOptions):
    """Settings of `evaluate`."""

    model_config = ConfigDict(extra="forbid")

    gold: str = Field(description="gold labels JSONL (tests/gold/aristotle_gold.jsonl)")
    notes: str | None = Field(default=None, description="gold notes; default notes.jsonl beside the gold file")
    columns: dict[str, str] = Field(default_factory=dict, description="id_column / text_column of the gold notes")
    criteria: str = Field(default="criteria/aristotle.crit", description=".crit file that defines the gold questions")
    dbs: list[str] = Field(default_factory=list, description="results stores written by `crit run`")
    models: list[ModelSpec] = Field(default_factory=list)
    questions: list[str] | None = Field(default=None, description="only these gold questions")
    limit: int | None = Field(default=None, description="only the first N gold notes")
    out: str | None = Field(default="eval.duckdb", description="DuckDB file for the eval table (None: do not write)")
    device: str = "auto"
    rel_tol: float = 0.05
    n_boot: int = 1000
    seed: int = 0


class MetricRow(BaseModel):
    source: str
    question: str  # a question name, or "all booleans" / "all numerics" / "all"
    metric: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int


class GoldLabel(BaseModel):
    note_id: str
    question: str
    kind: Literal["boolean", "numeric"]
    answer: str | float | None
    unit: str | None = None


def gold_split(note_id: str) -> Literal["dev", "test"]:
    """The fixed split of gold notes: a third by a stable hash of note_id is "test", the rest "dev".

    Fixed before any tuning (benchmarks/RESULTS.md): terms, prompts and thresholds are tuned
    on dev only, and test is reported beside it."""
    return "test" if int(hashlib.sha256(note_id.encode()).hexdigest(), 16) % 3 == 0 else "dev"


def read_gold(path: str) -> list[GoldLabel]:
    p = Path(path)
    if not p.is_file():
        raise CritError(f"{path}: gold file not found")
    out = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(GoldLabel.model_validate_json(line))
            except ValueError:
                raise CritError(f"{path}:{lineno}: not a gold label (note_id, question, kind, answer)") from None
    return out


def truefalse_variant(question: Any) -> Any:
    """The same boolean question with the answer schema true/false/null instead of the enum.

    Only for the schema experiment: the engine's prompt still names the enum in its system
    message, so the guide restates the variant's meaning for the model.
    """
    from crit.grammar.questions import SOURCE_MAX_CHARS, fingerprint

    schema = {
        "type": "object",
        "properties": {
            "answer": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
            "source": {"type": "string", "maxLength": SOURCE_MAX_CHARS},
        },
        "required": ["answer", "source"],
        "additionalProperties": False,
    }
    guide = (question.guide or "").replace("Answer present", "Answer true")
    guide = (guide + " " if guide else "") + (
        "Answer true if the note documents it, false if the note says it is absent or denied, "
        "null if the note does not say."
    )
    return question.model_copy(
        update={"answer_schema": schema, "guide": guide, "fingerprint": fingerprint(question.text, guide, schema)}
    )


def boolean_label(answer: Any, schema: BooleanSchema) -> str:
    """present / absent / not mentioned / error for one engine Answer."""
    if answer is None or answer.error:
        return ERROR
    if schema == "enum":
        return "not mentioned" if answer.na else ("present" if answer.value == 1.0 else "absent")
    choice = json.loads(answer.raw)["answer"]  # validated against the variant schema by the backend
    return {True: "present", False: "absent", None: "not mentioned"}[choice]


def numeric_value(value: float | None, na: bool, error: str | None) -> float | None:
    if error:
        return _NUMERIC_ERROR
    return None if na or value is None else float(value)


Predictions = dict[tuple[str, str], Any]  # (note_id, question) -> boolean label or numeric value


def _run_model(spec: ModelSpec, notes: list[tuple[str, str]], questions: list[Any], device: str) -> tuple[Predictions, str, list[dict[str, Any]]]:
    from rich.progress import Progress

    from crit.engine.answering.backends.transformers import TransformersBackend
    from crit.engine.answering.model import load_model

    loaded = load_model(spec.model, spec.adapter, device)
    backend = TransformersBackend(loaded)
    asked = [truefalse_variant(q) if (q.kind == "boolean" and spec.boolean_schema == "truefalse") else q for q in questions]
    if spec.layout == "evidence" and spec.boolean_schema == "enum":
        from crit.engine.answering.policy import EvidenceEngine

        engine = EvidenceEngine(backend, policy="model")

        def answer(note_id: str, text: str, qs: list[Any]) -> list[Any]:
            return engine.answer(note_id, text, qs)[0]
    else:
        answer = backend.answer
    preds: Predictions = {}
    rows: list[dict[str, Any]] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(spec.name(), total=len(notes))
        for note_id, text in notes:
            for q, a in zip(questions, answer(note_id, text, asked)):
                value, na = a.value, a.na
                if q.kind == "boolean":
                    label = boolean_label(a, spec.boolean_schema)
                    preds[(note_id, q.name)] = label
                    # stored in the engine's encoding whatever the schema variant: 1 present, 0 absent
                    value, na = {"present": (1.0, False), "absent": (0.0, False)}.get(label, (None, label == "not mentioned"))
                else:
                    preds[(note_id, q.name)] = numeric_value(a.value, a.na, a.error)
                rows.append({"note_id": note_id, "question": q.name, "raw": a.raw, "value": value, "na": na,
                             "error": a.error, "latency_s": a.latency_s})
            progress.advance(task)
    return preds, loaded.identity, rows


def _read_store(path: str, kinds: dict[str, str]) -> dict[str, Predictions]:
    """Predictions per backend identity from a `crit run` results store."""
    import duckdb

    from crit.engine.store import Store

    if not Path(path).is_file():
        raise CritError(f"{path}: results database not found")
    with Store.open(path, read_only=True) as store:
        try:
            rows = store.answers_by_backend()
        except duckdb.CatalogException:
            raise CritError(f"{path}: no answers/questions tables; is it a store written by `crit run`?") from None
    out: dict[str, Predictions] = {}
    for identity, note_id, question, value, na, error in rows:
        if question not in kinds:
            continue
        if kinds[question] == "boolean":
            label = ERROR if error else ("not mentioned" if na else ("present" if value == 1.0 else "absent"))
        else:
            label = numeric_value(value, na, error)
        out.setdefault(f"{Path(path).stem}:{identity}", {})[(note_id, question)] = label
    return out


def score(source: str, gold: list[GoldLabel], preds: Predictions, cfg: EvalConfig) -> list[MetricRow]:
    """Every metric of one source against the gold labels it covers (missing answers count as errors)."""
    from crit.grammar.questions import BOOLEAN_CHOICES

    rows: list[MetricRow] = []

    def add(question: str, metric: str, fn: Any, g: list[Any], p: list[Any]) -> None:
        value = fn(g, p)
        ci = metrics.bootstrap_ci(fn, g, p, n=cfg.n_boot, seed=cfg.seed) if value is not None else None
        rows.append(MetricRow(source=source, question=question, metric=metric, value=value,
                              ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None, n=len(g)))

    def within(g: list[Any], p: list[Any]) -> float | None:
        return metrics.numeric_match(g, p, rel_tol=cfg.rel_tol)["within_tol"]

    def exact(g: list[Any], p: list[Any]) -> float | None:
        return metrics.numeric_match(g, p, rel_tol=cfg.rel_tol)["exact"]

    def balanced(g: list[Any], p: list[Any]) -> float | None:
        return metrics.balanced_accuracy(g, p, labels=BOOLEAN_CHOICES)

    names = list(dict.fromkeys(x.question for x in gold))
    all_bool: tuple[list[Any], list[Any]] = ([], [])
    all_num: tuple[list[Any], list[Any]] = ([], [])
    errors = 0
    for name in names:
        labels = [x for x in gold if x.question == name]
        kind = labels[0].kind
        g = [x.answer for x in labels]
        default = ERROR if kind == "boolean" else _NUMERIC_ERROR
        p = [preds.get((x.note_id, name), default) for x in labels]
        errors += sum(v == default for v in p)
        if kind == "boolean":
            add(name, "balanced_acc", balanced, g, p)
            all_bool[0].extend(g)
            all_bool[1].extend(p)
        else:
            g = [None if v is None else float(v) for v in g]
            add(name, f"within_{round(cfg.rel_tol * 100)}%", within, g, p)
            all_num[0].extend(g)
            all_num[1].extend(p)
    if all_bool[0]:
        add("all booleans", "micro_f1(present)", metrics.micro_f1, *all_bool)
        add("all booleans", "balanced_acc", balanced, *all_bool)
    if all_num[0]:
        add("all numerics", "exact", exact, *all_num)
        add("all numerics", f"within_{round(cfg.rel_tol * 100)}%", within, *all_num)
    n = len(gold)
    rows.append(MetricRow(source=source, question="all", metric="error_rate", value=errors / n if n else None,
                          ci_low=None, ci_high=None, n=n))
    return rows


def evaluate(cfg: EvalConfig) -> list[MetricRow]:
    """Score every source in `cfg` on the gold set; write the `eval` table when `cfg.out` is set.

    Example (shell): ``crit eval tests/gold/aristotle_gold.jsonl --db results.duckdb --model-run``
    """
    from crit.engine.eligibility import load_plan
    from crit.trainer.synth import note_pairs

    gold = read_gold(cfg.gold)
    notes_path = cfg.notes or str(Path(cfg.gold).with_name("notes.jsonl"))
    if cfg.notes is None and not Path(notes_path).is_file() and cfg.dbs and not cfg.models:
        # Labels exported from a report (or any labels without a notes file beside them): only stores are
        # scored, and the stores hold the notes, so every labelled note counts, in the labels' order.
        notes = [(note_id, "") for note_id in dict.fromkeys(x.note_id for x in gold)]
        notes_path = "the labels"
    else:
        notes, _ = note_pairs(notes_path, cfg.columns)
    if cfg.limit is not None:
        notes = notes[: cfg.limit]
    note_ids = {n for n, _ in notes}
    if cfg.questions is not None:
        unknown = sorted(set(cfg.questions) - {x.question for x in gold})
        if unknown:
            raise CritError(f"{cfg.gold}: no gold labels for question(s) {', '.join(unknown)}")
    gold = [x for x in gold if x.note_id in note_ids and (cfg.questions is None or x.question in cfg.questions)]
    if not gold:
        raise CritError(f"{cfg.gold}: no gold labels for the notes in {notes_path}")
    plan = load_plan(cfg.criteria)
    names = list(dict.fromkeys(x.question for x in gold))
    asked = {q.name for q in plan.questions}
    if unknown := [n for n in names if n not in asked]:
        raise CritError(f"{cfg.gold}: question(s) {', '.join(unknown)} are not in {cfg.criteria} (hint: --criteria FILE.crit)")
    questions = [plan.question(n) for n in names]
    kinds = {q.name: q.kind for q in questions}

    sources: dict[str, Predictions] = {}
    answer_rows: list[dict[str, Any]] = []
    gold_notes = {x.note_id for x in gold}
    for path in cfg.dbs:
        from_store = _read_store(path, kinds)
        if not any(nid in gold_notes for preds in from_store.values() for nid, _ in preds):
            # Scoring would print 0.00 everywhere: say why instead.
            raise CritError(f"{path} holds none of the {len(gold_notes)} gold notes of {cfg.gold}, so there is nothing "
                            f"to score (hint: screen them first: crit run FILE.crit {notes_path} --db {path})")
        sources.update(from_store)
    for spec in cfg.models:
        preds, identity, rows = _run_model(spec, notes, questions, cfg.device)
        sources[spec.name()] = preds
        answer_rows.extend({"source": spec.name(), "identity": identity, **r} for r in rows)
    if not sources:
        raise CritError("nothing to evaluate: pass --db with a results store or --model/--adapter to run a model")

    results = [row for name, preds in sources.items() for row in score(name, gold, preds, cfg)]
    if cfg.out:
        from crit.engine.store.trainer import write_eval

        write_eval(cfg.out, [r.model_dump() for r in results], answer_rows)
    return results


def table(results: list[MetricRow]) -> Any:
    """A rich table: one row per (question, metric), one column per source, "value [low-high]"."""
    from rich.markup import escape
    from rich.table import Table

    sources = list(dict.fromkeys(r.source for r in results))
    keys = list(dict.fromkeys((r.question, r.metric) for r in results))
    cell = {(r.source, r.question, r.metric): r for r in results}
    t = Table(title="crit eval (95% bootstrap CI)")
    t.add_column("question")
    t.add_column("metric")
    t.add_column("n", justify="right")
    for s in sources:
        t.add_column(escape(s), justify="right", overflow="fold")  # "embedded[enum]" is not rich markup
    for q, m in keys:
        ns = {cell[(s, q, m)].n for s in sources if (s, q, m) in cell}
        values = []
        for s in sources:
            r = cell.get((s, q, m))
            if r is None or r.value is None:
                values.append("-")
            elif r.ci_low is None:
                values.append(f"{r.value:.2f}")
            else:
                values.append(f"{r.value:.2f} [{r.ci_low:.2f}-{r.ci_high:.2f}]")
        t.add_row(q, m, "/".join(str(n) for n in sorted(ns)), *values)
    return t
