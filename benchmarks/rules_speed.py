"""Benchmark: rule evaluation (crit.engine.eligibility.evaluate) over about a million synthetic answers for aristotle.crit.

Builds, inside DuckDB, 50,000 notes answering every question the ARISTOTLE rules
read (23 plus the built-in sex question: 1.2 million answer rows), with 10% NA,
0.5% failed generations, creatinine partly in umol/L, hemoglobin partly in g/L,
a few unconvertible units, and a notes table whose sex is mixed, oddly spelled
or NULL. Then it times `evaluate` (the SQL evaluator) end to end.

For scale, it also times a naive baseline measured in the same run: a plain
per-note Python loop that walks the AST for each note of a 2,000-note sample
(answers fetched per note, one unit conversion lookup per value), extrapolated
to all notes. The baseline exists only here, to be timed and to cross-check the
SQL's statuses on the sample; the engine has one evaluator, the SQL.

    python benchmarks/rules_speed.py [--notes 50000] [--sample 2000]
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

import duckdb

from crit.engine.eligibility import load_plan
from crit.engine.eligibility.evaluate import evaluate
from crit.grammar import ast, units
from crit.grammar.plan import Plan

ROOT = Path(__file__).resolve().parent.parent

# Numeric questions: (low, high) uniform in the declared unit.
SPREAD = {
    "platelets": (40, 450),
    "bilirubin": (0.1, 3.0),
    "ast": (8, 150),
    "alt": (8, 150),
    "creat": (0.4, 3.5),
    "hgb": (7, 18),
    "lvef": (15, 75),
    "age": (30, 98),
    "chads2_score": (0, 6),
    "glucose": (60, 300),
}


def build(con: duckdb.DuckDBPyConnection, plan: Plan, notes: int) -> int:
    """Synthetic notes and answers, generated in DuckDB; returns the number of answer rows."""
    read = {n.name for e in [c.expr for c in plan.criteria] + [l.expr for l in plan.lets] for n in ast.names_in(e)}
    questions = [q for q in plan.questions if q.name in read or q.name == "sex"]
    con.execute("SELECT setseed(0.42)")
    con.execute(
        "CREATE TABLE notes AS SELECT 'note-' || i AS note_id, "
        "CASE WHEN r < 0.40 THEN 'female' WHEN r < 0.80 THEN 'male' WHEN r < 0.85 THEN 'F' WHEN r < 0.90 THEN 'm' "
        "ELSE NULL END AS sex FROM (SELECT i, random() AS r FROM range(?) t(i))",
        [notes],
    )
    qrows = ", ".join(
        f"('{q.name}', '{q.kind}', {SPREAD.get(q.name, (0, 1))[0]}, {SPREAD.get(q.name, (0, 1))[1]}, "
        f"{'NULL' if q.unit is None else repr(q.unit)})"
        for q in questions
    )
    con.execute("CREATE TEMP TABLE spec (question VARCHAR, kind VARCHAR, lo DOUBLE, hi DOUBLE, unit VARCHAR)")
    con.execute(f"INSERT INTO spec VALUES {qrows}")
    con.execute(
        """CREATE TABLE answers AS
        WITH draws AS (
            SELECT n.note_id, s.*, random() AS r, random() AS v, random() AS u FROM notes n CROSS JOIN spec s
        )
        SELECT note_id, question, question || '-fp' AS answer_key,
            CASE WHEN r < 0.105 THEN NULL
                 WHEN kind = 'boolean' THEN CASE WHEN v < 0.3 THEN 1.0 ELSE 0.0 END
                 WHEN question = 'creat' AND u < 0.2 THEN round((lo + v * (hi - lo)) * 88.42, 0)
                 WHEN question = 'hgb' AND u < 0.1 THEN round((lo + v * (hi - lo)) * 10, 0)
                 ELSE round(lo + v * (hi - lo), 2) END AS value,
            CASE WHEN kind = 'boolean' OR r < 0.105 THEN NULL
                 WHEN question = 'creat' AND u < 0.2 THEN 'umol/L'
                 WHEN question = 'hgb' AND u < 0.1 THEN 'g/L'
                 WHEN u > 0.995 THEN 'per week'
                 WHEN u > 0.9 THEN NULL
                 ELSE unit END AS unit,
            r < 0.1 AS na,
            CASE WHEN r >= 0.1 AND r < 0.105 THEN 'timeout' END AS error,
            NULL::VARCHAR AS source, NULL::BOOLEAN AS grounded
        FROM draws"""
    )
    return con.execute("SELECT count(*) FROM answers").fetchone()[0]


# ---- the naive baseline: a per-note Python loop (timing and cross-check only) --------------


def naive_statuses(con: duckdb.DuckDBPyConnection, plan: Plan, note_ids: list[str]) -> dict[tuple[str, int], str]:
    questions = {q.name: q for q in plan.questions}

    @functools.cache
    def lin(question: str, unit: str | None) -> units.Linear | None:
        q = questions[question]
        return units.linear(unit, q.unit, units.analyte_of(q.phrase, q.aka), plan.conversions)

    out: dict[tuple[str, int], str] = {}
    for note in note_ids:
        sex_col = con.execute("SELECT sex FROM notes WHERE note_id = ?", [note]).fetchone()[0]
        values: dict[str, Any] = {}
        for question, value, unit, na, error in con.execute(
            "SELECT question, value, unit, na, error FROM answers WHERE note_id = ?", [note]
        ).fetchall():
            q = questions.get(question)
            if q is None or na or error is not None or value is None:
                continue
            if q.kind == "boolean":
                values[question] = value != 0
                continue
            m = lin(question, unit)
            if m is not None:
                values[question] = min(m.apply(value), q.cap) if q.cap is not None else m.apply(value)
        s = (sex_col or "").strip().lower()
        sex = "male" if s in ("male", "m", "man") else "female" if s in ("female", "f", "woman") else None
        if sex is None and "sex" in values:
            sex = "female" if values["sex"] else "male"
        env = dict(values)
        for let in plan.lets:
            env[let.name] = _walk(let.expr, env, sex, plan, None)
        for pos, c in enumerate(plan.criteria, 1):
            v = _walk(c.expr, env, sex, plan, None)
            out[(note, pos)] = "unknown" if v is None else "met" if v else "not met"
    return out


def _walk(e: ast.Node, env: dict[str, Any], sex: str | None, plan: Plan, target: str | None) -> Any:
    if isinstance(e, ast.Quantity):
        if e.unit and target and plan.question(target).unit:
            q = plan.question(target)
            return units.convert(e.value, e.unit, q.unit, units.analyte_of(q.phrase, q.aka), plan.conversions)
        return e.value
    if isinstance(e, ast.BoolLit):
        return e.value
    if isinstance(e, ast.Name):
        return env.get(e.name)
    if isinstance(e, ast.Not):
        v = _walk(e.operand, env, sex, plan, None)
        return None if v is None else not v
    if isinstance(e, (ast.And, ast.Or)) or (isinstance(e, ast.Aggregate) and e.func != "count"):
        vals = [_walk(a, env, sex, plan, None) for a in e.args]
        is_and = isinstance(e, ast.And) or (isinstance(e, ast.Aggregate) and e.func == "all")
        if (False if is_and else True) in vals:
            return not is_and
        return None if None in vals else is_and
    if isinstance(e, ast.Neg):
        v = _walk(e.operand, env, sex, plan, target)
        return None if v is None else -v
    if isinstance(e, (ast.Arith, ast.Compare)):
        lt = _name_of(e.right) if isinstance(e, ast.Compare) else None
        rt = _name_of(e.left) if isinstance(e, ast.Compare) else None
        a, b = _walk(e.left, env, sex, plan, lt), _walk(e.right, env, sex, plan, rt)
        if a is None or b is None:
            return None
        ops = {"+": a + b, "-": a - b, "*": a * b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b,
               "=": a == b, "!=": a != b}
        if e.op == "/":
            return None if b == 0 else a / b
        return ops[e.op]
    if isinstance(e, ast.BoundRef):
        r = plan.ranges[e.name]
        m, f = (r.male_high, r.female_high) if e.func == "uln" else (r.male_low, r.female_low)
        return m if m == f else None if sex is None else m if sex == "male" else f
    if isinstance(e, ast.RangeTest):
        r, v = plan.ranges[e.operand.name], env.get(e.operand.name)
        m, f = (r.male_high, r.female_high) if e.side == "above" else (r.male_low, r.female_low)
        bound = m if m == f else None if sex is None else m if sex == "male" else f
        if v is None or (bound is None and m != f):
            return None
        return (v > bound) if e.side == "above" else (v < bound)
    raise TypeError(type(e).__name__)


def _name_of(e: ast.Node) -> str | None:
    if isinstance(e, (ast.Name, ast.BoundRef)):
        return e.name
    if isinstance(e, ast.Arith):
        return _name_of(e.left) or _name_of(e.right)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=50_000)
    parser.add_argument("--sample", type=int, default=2_000, help="notes the naive per-note loop is timed on")
    args = parser.parse_args()

    plan = load_plan(ROOT / "criteria" / "aristotle.crit")
    con = duckdb.connect()
    t0 = time.perf_counter()
    rows = build(con, plan, args.notes)
    print(f"synthetic store: {args.notes:,} notes, {rows:,} answer rows (built in {time.perf_counter() - t0:.1f} s)")
    keys = {q.name: f"{q.name}-fp" for q in plan.questions}

    evaluate(con, plan, keys)  # warm-up: pint's registry and DuckDB's first plans
    runs, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        summary = evaluate(con, plan, keys)
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    best = min(runs)
    print(
        f"SQL evaluate: {best:.2f} s best of 3 ({', '.join(f'{r:.2f}' for r in runs)}), "
        f"{rows / best:,.0f} answer rows/s, {args.notes / best:,.0f} notes/s; "
        f"CPU {min(cpu):.2f} s over all threads (wall time is inflated when other work shares the cores)"
    )
    print(
        f"  {summary.eligible:,} eligible, {summary.ineligible:,} ineligible, {summary.unknown:,} unknown; "
        f"{summary.criteria} criteria"
    )

    sample = [r[0] for r in con.execute("SELECT note_id FROM notes ORDER BY note_id LIMIT ?", [args.sample]).fetchall()]
    t0 = time.perf_counter()
    naive = naive_statuses(con, plan, sample)
    naive_s = time.perf_counter() - t0
    extrapolated = naive_s * args.notes / len(sample)
    print(
        f"naive per-note Python loop (baseline, not the engine): {naive_s:.2f} s for {len(sample):,} notes, "
        f"extrapolated to {args.notes:,} notes: {extrapolated:.0f} s; SQL is {extrapolated / best:,.0f}x faster"
    )
    sql = {
        (n, p): s
        for n, p, s in con.execute(
            "SELECT note_id, position, status FROM criteria WHERE note_id IN (SELECT unnest(?))", [sample]
        ).fetchall()
    }
    differ = sum(1 for k, v in naive.items() if sql.get(k) != v)
    print(f"cross-check on the sample: {len(naive) - differ:,} of {len(naive):,} criterion statuses agree")


if __name__ == "__main__":
    main()
