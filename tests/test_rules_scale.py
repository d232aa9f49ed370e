"""Rules at scale: the compiled SQL grows linearly with the file, and what it decides does not change.

Each case is small enough to run in seconds; benchmarks/rules_scale.py times the large ones.
Expected statuses come from Kleene logic written out here in Python, over answers chosen at random.
"""

from __future__ import annotations

import random
from typing import Any

import duckdb
import pytest

from crit.engine.eligibility.compile import LET_LAYERS, rules_sql, statements
from crit.engine.eligibility.evaluate import evaluate
from crit.grammar.plan import Plan
from tests.test_eligibility import NA, answer_row, plan_of, store

Kleene = bool | None


def k_and(a: Kleene, b: Kleene) -> Kleene:
    return False if a is False or b is False else None if a is None or b is None else True


def k_or(a: Kleene, b: Kleene) -> Kleene:
    return True if a is True or b is True else None if a is None or b is None else False


def answers_for(notes: int, questions: int, seed: int) -> dict[str, list[Kleene]]:
    rng = random.Random(seed)
    return {f"n{i}": [rng.choice([True, False, None]) for _ in range(questions)] for i in range(notes)}


def load(plan: Plan, answers: dict[str, list[Kleene]]) -> duckdb.DuckDBPyConnection:
    rows = [answer_row(note, f"b{j}", NA if v is None else v) for note, values in answers.items()
            for j, v in enumerate(values)]
    return store(rows, [(note, "female") for note in answers])


def statuses(con: duckdb.DuckDBPyConnection, position: int) -> dict[str, str]:
    return dict(con.execute("SELECT note_id, status FROM criteria WHERE position = ?", [position]).fetchall())


def word(v: Kleene) -> str:
    return "unknown" if v is None else "met" if v else "not met"


def chain_text(questions: int, lets: int) -> str:
    lines = ['trial T "chain"'] + [f'boolean b{i} "finding {i}"' for i in range(questions)]
    lines.append("let l0 = b0")
    for k in range(1, lets):
        op = "or" if k % 2 else "and not"
        lines.append(f"let l{k} = l{k - 1} {op} b{k % questions}")
    lines.append(f'include "chain": l{lets - 1}')
    lines.append('include "early": l1 and b2')  # a let read by a criterion far from its level
    return "\n".join(lines) + "\n"


def test_a_chain_of_lets_longer_than_a_statement_decides_as_kleene_logic() -> None:
    questions, lets = 5, LET_LAYERS * 2 + 7  # three statements of lets
    plan = plan_of(chain_text(questions, lets))
    answers = answers_for(12, questions, seed=29)
    con = load(plan, answers)
    evaluate(con, plan)
    for note, v in answers.items():
        value = v[0]
        for k in range(1, lets):
            b = v[k % questions]
            value = k_or(value, b) if k % 2 else k_and(value, None if b is None else not b)
            if k == 1:
                early = k_and(value, v[2])
        assert statuses(con, 1)[note] == word(value)
        assert statuses(con, 2)[note] == word(early)
    # The temporary tables the lets went through are gone.
    left = con.execute("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '\\_crit\\_%' ESCAPE '\\'").fetchall()
    assert left == []


def test_let_chain_sql_grows_linearly() -> None:
    small, large = (len(rules_sql(plan_of(chain_text(5, n)))) for n in (400, 800))
    assert large < 2.2 * small


def test_question_sql_grows_linearly() -> None:
    def text(n: int) -> str:
        return ('trial T "q"\n' + "".join(f'boolean b{i} "finding {i}"\n' for i in range(n))
                + 'include "any": any(' + ", ".join(f"b{i}" for i in range(n)) + ")\n")

    small, large = (len(rules_sql(plan_of(text(n)))) for n in (200, 400))
    assert large < 2.2 * small


@pytest.mark.parametrize("depth", [3, 12, 31])  # 31: the deepest `crit check` accepts (E006, 64 levels)
def test_nested_counts_decide_as_kleene_logic_in_bounded_sql(depth: int) -> None:
    expr = "b0"
    for _ in range(depth):
        expr = f"count({expr}, b1, not b2) >= 2"
    plan = plan_of('trial T "count"\n' + "".join(f'boolean b{i} "finding {i}"\n' for i in range(3))
                   + f'include "nested": {expr}\n')
    # Four copies per level made 12 levels gigabytes; now each level adds its reason's test, and
    # 31 levels (the deepest that parses) make 234 kB.
    assert sum(map(len, statements(plan))) < 400_000
    answers = answers_for(27, 3, seed=5)
    con = load(plan, answers)
    evaluate(con, plan)
    for note, (b0, b1, b2) in answers.items():
        value: Kleene = b0
        for _ in range(depth):
            args = [value, b1, None if b2 is None else not b2]
            t, hi = sum(a is True for a in args), sum(a is not False for a in args)
            value = True if t >= 2 else False if hi < 2 else None
        assert statuses(con, 1)[note] == word(value), note


def test_a_count_of_many_arguments_stays_within_duckdb_depth() -> None:
    args = ", ".join(f"b{i % 2}" for i in range(1500))
    plan = plan_of('trial T "count"\nboolean b0 "x"\nboolean b1 "y"\n'
                   f'include "many": count({args}) >= 800\ninclude "sum": count({args}) + 1 > 800\n')
    answers: dict[str, list[Any]] = {"n1": [True, True], "n2": [True, None], "n3": [False, False]}
    con = load(plan, answers)
    evaluate(con, plan)
    assert statuses(con, 1) == {"n1": "met", "n2": "unknown", "n3": "not met"}
    assert statuses(con, 2) == {"n1": "met", "n2": "unknown", "n3": "not met"}


def test_many_questions_keep_each_answer_in_its_column() -> None:
    n = 300
    plan = plan_of('trial T "wide"\n' + "".join(f'boolean b{i} "finding {i}"\n' for i in range(n))
                   + "".join(f'include "c{i}": b{i}\n' for i in range(0, n, 7)))
    answers = answers_for(3, n, seed=7)
    answers["n0"][5] = None
    # A note with no answer to some questions: missing, never another question's answer.
    rows = [answer_row(note, f"b{j}", NA if v is None else v) for note, values in answers.items()
            for j, v in enumerate(values) if not (note == "n2" and j % 3 == 0)]
    con = store(rows, [(note, "male") for note in answers])
    evaluate(con, plan)
    got = {(note, q): (value, reason) for note, q, value, reason in
           con.execute("SELECT note_id, question, value, reason FROM answer_values").fetchall()}
    for note, values in answers.items():
        for j, v in enumerate(values):
            if note == "n2" and j % 3 == 0:
                assert got[(note, f"b{j}")] == (None, "missing")
            elif v is None:
                assert got[(note, f"b{j}")][1] == "na"
            else:
                assert got[(note, f"b{j}")] == (1.0 if v else 0.0, None)
    for pos, i in enumerate(range(0, n, 7), 1):
        for note, values in answers.items():
            v = None if note == "n2" and i % 3 == 0 else values[i]
            assert statuses(con, pos)[note] == word(v)


def test_evaluate_leaves_the_connections_optimizer_setting_as_it_was() -> None:
    plan = plan_of('trial T "o"\nboolean b0 "x"\ninclude "c": b0\n')
    con = load(plan, {"n1": [True]})
    con.execute("SET disabled_optimizers = 'top_n'")
    evaluate(con, plan)
    assert con.execute("SELECT current_setting('disabled_optimizers')").fetchone() == ("top_n",)
