"""Attacks that once worked (issue 16), kept as regression tests: a criteria file cannot run SQL,
and `crit sql` cannot write, read other files or reach the network."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from crit.cli import cli
from crit.engine.answering.backends.rules import RulesFactory
from crit.engine.eligibility import load_plan
from crit.engine.eligibility.compile import rules_sql
from crit.engine.run import run

INJECTION = r"x\nCOPY (SELECT note_id, text FROM notes) TO '{leak}';\nCREATE TABLE pwned AS SELECT 1 AS x; --"


def _crit(tmp_path: Path, label: str) -> Path:
    path = tmp_path / "evil.crit"
    path.write_text(f'trial T-1\nboolean af "atrial fibrillation"\ninclude "{label}": af\n', encoding="utf-8")
    return path


def _notes(tmp_path: Path) -> Path:
    path = tmp_path / "notes.jsonl"
    path.write_text(json.dumps({"note_id": "n1", "text": "Atrial fibrillation, rate controlled."}) + "\n")
    return path


def test_a_label_cannot_end_its_sql_comment(tmp_path):
    """A label holding a newline once ended the `-- include ...` comment of the rules SQL, and the rest
    ran: it copied every note to a file and created a table."""
    leak = tmp_path / "leak.csv"
    plan = load_plan(_crit(tmp_path, INJECTION.format(leak=leak)))
    db = tmp_path / "r.duckdb"
    summary = run(plan, _notes(tmp_path), db, RulesFactory())
    assert summary.status == "done" and not leak.exists()
    con = duckdb.connect(str(db), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    labels = [r[0] for r in con.execute("SELECT label FROM criteria").fetchall()]
    con.close()
    assert "pwned" not in tables
    assert labels == [INJECTION.format(leak=leak).replace("\\n", "\n")]  # stored as written, as data


@settings(max_examples=200, deadline=None)
@given(label=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\'), max_size=40))
def test_any_label_gives_the_same_statements(label):
    """Property: whatever a label holds, the rules SQL parses as the same statements as with a plain one."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        plain = rules_sql(load_plan(_crit(Path(d), "x")))
        odd = rules_sql(load_plan(_crit(Path(d), label.replace("\n", "\\n"))))
    con = duckdb.connect()
    assert [s.type for s in con.extract_statements(odd)] == [s.type for s in con.extract_statements(plain)]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("store")
    db = tmp / "r.duckdb"
    run(load_plan(_crit(tmp, "AF")), _notes(tmp), db, RulesFactory())
    return db


@pytest.mark.parametrize("statement", [
    "COPY (SELECT note_id, text FROM notes) TO '{tmp}/x.csv'",
    "COPY (SELECT 1) TO '{db}'",
    "EXPORT DATABASE '{tmp}/export'",
    "ATTACH '{tmp}/other.duckdb' (READ_WRITE)",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "INSTALL httpfs",
    "SET enable_external_access = true",
    "DELETE FROM answers",
    "SELECT 1; DROP TABLE notes",
    "CREATE TABLE t AS SELECT 1",
])
def test_crit_sql_refuses_anything_but_reading_the_store(store, tmp_path, statement):
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    query = statement.format(tmp=tmp_path, db=store)
    result = CliRunner().invoke(cli, ["sql", str(store), query])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
    assert list(tmp_path.iterdir()) == []  # no file written anywhere we can see


@pytest.mark.parametrize("query", ["", "   ", "/* nothing */"])
def test_crit_sql_with_no_statement_says_so(store, query):
    result = CliRunner().invoke(cli, ["sql", str(store), query])
    assert result.exit_code == 1 and "exactly one statement" in result.output


def test_crit_sql_still_reads(store):
    result = CliRunner().invoke(cli, ["sql", str(store), "with a as (select count(*) as n from answers) select n from a",
                                      "--csv"])
    assert result.exit_code == 0 and result.output.strip().splitlines() == ["n", "1"]


def test_merge_refuses_a_criteria_file_the_shards_did_not_run(tmp_path):
    """`crit merge` once ran whatever .crit path a shard recorded, edited or not. Now it evaluates the plan
    the shard stored, and refuses a --criteria file whose hash differs from what every shard ran."""
    crit = _crit(tmp_path, "AF")
    shard = tmp_path / "s1.duckdb"
    run(load_plan(crit), _notes(tmp_path), shard, RulesFactory())
    crit.write_text(crit.read_text() + 'exclude "anything": af\n')  # edited after the shard ran
    out = tmp_path / "all.duckdb"
    refused = CliRunner().invoke(cli, ["merge", str(out), str(shard), "--criteria", str(crit)])
    assert refused.exit_code == 1 and "is not the criteria file shard" in refused.output, refused.output
    merged = CliRunner().invoke(cli, ["merge", str(tmp_path / "all2.duckdb"), str(shard)])
    assert merged.exit_code == 0, merged.output
    con = duckdb.connect(str(tmp_path / "all2.duckdb"), read_only=True)
    labels = [r[0] for r in con.execute("SELECT label FROM criteria").fetchall()]
    con.close()
    assert labels == ["AF"]  # the plan the shard ran, not the edited file


def test_a_key_pasted_into_api_key_env_is_refused_unseen(tmp_path):
    key = "sk-proj-" + "A1b2C3d4" * 6
    db = tmp_path / "r.duckdb"
    result = CliRunner().invoke(cli, ["run", str(_crit(tmp_path, "AF")), str(_notes(tmp_path)), "--db", str(db),
                                      "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                                      "--api-key-env", key])
    assert result.exit_code == 1 and "looks like a key" in result.output
    assert key not in result.output and not db.exists()


def test_credentials_in_the_base_url_are_never_stored():
    from crit.engine.answering.backends.openai import OpenAIFactory
    from crit.engine.answering.payloads import public_url

    factory = OpenAIFactory(model="m", base_url="https://alice:s3cret@llm.example:8443/v1")
    assert factory.parameters()["base_url"] == "https://llm.example:8443/v1"
    assert public_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize("target", ["STORE", "", "/proc/crit-report.html", "/dev/full"])
def test_report_refuses_bad_outputs_in_one_line(store, target):
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    out = str(store) if target == "STORE" else target
    result = CliRunner().invoke(cli, ["report", str(store), "-o", out])
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before


BASE = 'trial T-1\nnumeric creat highest "creatinine" in mg/dL\nboolean af "atrial fibrillation"\n'


@pytest.mark.parametrize("name, text, code", [
    ("a sum of 300 terms", BASE + "let s = " + " + ".join(["creat"] * 300) + "\ninclude s > 1\n", "E006"),
    ("a lone surrogate escape", BASE + 'include "\\ud800": af\n', "E009"),
    ("a threshold that overflows once converted", BASE + "include creat > 1e308 g/dL\n", "E010"),
    ("a unit with a zero scale", BASE + 'numeric plt lowest "platelets" in 10^3/uL\ninclude plt > 100 10^3/0uL\n', "E107"),
])
def test_the_checker_reports_what_once_crashed_it(tmp_path, name, text, code):
    path = tmp_path / "bad.crit"
    path.write_text(text, encoding="utf-8")
    for command in ("check", "compile"):
        result = CliRunner().invoke(cli, [command, str(path)])
        assert result.exit_code == 1, (name, result.output)
        assert f"error[{code}]" in result.output and "Traceback" not in result.output


def test_a_400_digit_number_from_a_server_is_an_error_row():
    from crit.engine.answers import parse_answer
    from crit.grammar.questions import make_question

    q = make_question("creat", "numeric", "creatinine", order="highest", unit="mg/dL")
    raw = '{"status": "stated", "answer": ' + "9" * 400 + ', "unit": null, "source": ""}'
    parsed = parse_answer(raw, q, "creatinine 1.2")
    assert parsed.error is not None and parsed.error.startswith("not_finite") and len(parsed.error) < 100


def test_an_option_out_of_range_is_one_line():
    result = CliRunner().invoke(cli, ["select", "--db", "none.duckdb", "--out", "x", "--per-type", "-5"])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        "error: --per-type: Input should be greater than or equal to 1"]


def test_a_dollar_label_and_an_infinite_value_do_not_break_the_report(tmp_path):
    crit = tmp_path / "m.crit"
    crit.write_text(BASE + 'exclude "$x^2$ \\\\frac{a}{b}": creat > 2 mg/dL\n', encoding="utf-8")
    notes = tmp_path / "n.jsonl"
    notes.write_text(json.dumps({"note_id": "n1", "text": "Creatinine 3.1 mg/dL."}) + "\n")
    db = tmp_path / "r.duckdb"
    run(load_plan(crit), notes, db, RulesFactory())
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(db), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "$x^2$" in out.read_text()


def test_a_value_that_converts_to_infinity_is_left_out_of_the_plot_and_counted():
    import math

    from crit.engine.report.html import Threshold, value_plot

    svg = str(value_plot("creat", "mg/dL", {"all": [1.0, 2.0, math.inf]},
                    [Threshold(question="creat", label="$a$", op=">", male=2.0, female=2.0)]))
    assert "<svg" in svg and "1 value(s) not finite, left out" in svg


HOSTILE = Path(__file__).resolve().parent / "fixtures" / "notes" / "hostile"


@pytest.mark.parametrize("name", sorted(json.loads((HOSTILE / "expected.json").read_text())))
def test_hostile_note_files_are_read_exactly(name):
    """Each file of tests/fixtures/notes/hostile: the good rows, exactly, and every bad row named."""
    from crit.engine.notes.reader import read_notes

    expected = json.loads((HOSTILE / "expected.json").read_text())[name]
    notes, bad = read_notes(HOSTILE / name)
    assert [n.note_id for n in notes] == expected["good"]
    assert [[b.where, b.reason] for b in bad] == expected["bad"]
    if name == "quote_in_unquoted.csv":
        assert [n.text for n in notes] == ["Chest pain.\nDenies diabetes.", "Patient is 5'10\" tall and 80 kg.",
                                           'He said "no" to aspirin.']
    if name == "stray_quote.csv":
        assert notes[0].text == 'clean "quoted" text'  # no literal "" left in good rows


def test_typed_sources_refuse_a_text_column_that_is_not_text(tmp_path):
    from crit.engine.notes.reader import NoteReader
    from crit.grammar.errors import CritError

    path = tmp_path / "notes.parquet"
    duckdb.sql(f"COPY (SELECT 'n1' AS note_id, 42 AS text) TO '{path}' (FORMAT parquet)")
    with pytest.raises(CritError, match="holds INTEGER, not text"):
        NoteReader(path)


def test_a_column_name_with_a_quote_is_an_identifier(tmp_path):
    from crit.engine.notes.columns import NoteColumns
    from crit.engine.notes.reader import read_notes

    path = tmp_path / "notes.json"
    path.write_text(json.dumps([{"note_id": "n1", "doctor's note": "Atrial fibrillation."}]))
    notes, bad = read_notes(path, NoteColumns(text_column="doctor's note"))
    assert [(n.note_id, n.text) for n in notes] == [("n1", "Atrial fibrillation.")] and not bad
