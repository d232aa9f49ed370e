"""Inputs that once crashed or misled crit (issue 30), kept as regression tests, and the fuzzing that
guards each reader of outside text: dates, (more to come)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from crit.cli import cli
from crit.engine.notes.reader import parse_date

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "tests" / "fixtures" / "run" / "small.crit"


# ---- dates: one strict parser, total ---------------------------------------------------------------

@pytest.mark.parametrize("text", ["3/4/2019", "2024", "20240101", "2024-1-1", "2024-01-01 garbage", "20240101xx",
                                  "2024-W01-1", "2024-02-30", "2024-01-01T25:00", "１２３４-01-01"])
def test_a_date_crit_cannot_read_is_a_reason_not_a_crash(text: str) -> None:
    with pytest.raises(ValueError, match="not a (date written YYYY-MM-DD|calendar date)"):
        parse_date(text)


@pytest.mark.parametrize(("text", "day"), [("2024-01-31", date(2024, 1, 31)), (" 2024-01-31 ", date(2024, 1, 31)),
                                            ("2024-01-31T08:15:00Z", date(2024, 1, 31)),
                                            ("2024-01-31 08:15", date(2024, 1, 31)),
                                            ("2024-01-31T08:15:00.123+02:00", date(2024, 1, 31)),
                                            ("0001-01-01", date(1, 1, 1)), ("", None)])
def test_iso_dates_and_datetimes_pass(text: str, day: date | None) -> None:
    assert parse_date(text) == day


@pytest.mark.slow  # 10,000 cases or a real process or disk: CI runs it, the fast suite does not
@settings(max_examples=10_000, deadline=None)
@given(st.text(max_size=40))
def test_any_string_is_a_date_none_or_a_value_error(text: str) -> None:
    try:
        got = parse_date(text)
    except ValueError:
        return
    assert got is None or isinstance(got, date)


@pytest.mark.parametrize("dry_run", [False, True])
def test_short_note_dates_are_bad_rows_and_the_run_goes_on(tmp_path: Path, dry_run: bool) -> None:
    notes = tmp_path / "notes.jsonl"
    rows = [{"note_id": "ok", "note_date": "2024-01-01", "text": "A 72-year-old with hypertension."}]
    rows += [{"note_id": f"bad{i}", "note_date": d, "text": "Hypertension."}
             for i, d in enumerate(["3/4/2019", "2024", "20240101", "2024-1-1"])]
    notes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["run", str(SMALL), str(notes), "--db", str(tmp_path / "d.duckdb"), "--backend", "rules"]
    result = CliRunner().invoke(cli, args + (["--dry-run"] if dry_run else []))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    if not dry_run:
        assert result.output.count("is not a date written YYYY-MM-DD") == 4


# ---- a store crit did not make is never touched -------------------------------------------------------

def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _user_file(tmp_path: Path, kind: str) -> Path:
    import sqlite3

    import duckdb

    path = tmp_path / f"{kind}.db"
    if kind == "sqlite":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE t (x)")
        con.commit()
        con.close()
        return path
    con = duckdb.connect(str(path))
    if kind == "tables":  # the names crit's rules write: a user's own tables
        con.execute("CREATE TABLE criteria AS SELECT 1 AS mine; CREATE TABLE evaluation AS SELECT 2 AS mine")
    elif kind == "meta":
        con.execute("CREATE TABLE meta (k INTEGER)")
    elif kind == "meta-text":
        con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR); INSERT INTO meta VALUES ('schema_version', 'three')")
    elif kind == "newer":
        con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR); INSERT INTO meta VALUES ('schema_version', '99')")
    con.close()
    return path


@pytest.mark.parametrize(("kind", "said"), [
    ("tables", "a DuckDB file crit did not make"), ("meta", "a `meta` table that crit did not write"),
    ("meta-text", "a `meta` table that crit did not write"), ("sqlite", "a SQLite file, not a crit store"),
    ("newer", "written by a newer crit")])
def test_a_foreign_store_is_refused_in_one_line_and_left_as_it_was(tmp_path: Path, kind: str, said: str) -> None:
    db = _user_file(tmp_path, kind)
    before = _sha256(db)
    result = CliRunner().invoke(cli, ["run", str(SMALL), str(ROOT / "tests/fixtures/run/notes.jsonl"), "--db", str(db),
                                      "--backend", "rules"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and said in errors[0], result.output
    assert "Traceback" not in result.output
    assert _sha256(db) == before


# ---- a DuckDB source gives its table, nothing else ---------------------------------------------------------

def test_a_source_view_that_reads_a_file_is_refused_and_nothing_of_the_file_is_stored(tmp_path: Path) -> None:
    import duckdb

    secret = tmp_path / "secret.csv"
    secret.write_text("the-secret-line\n")
    src = tmp_path / "src.duckdb"
    con = duckdb.connect(str(src))
    con.execute(f"CREATE VIEW notes AS SELECT 'n1' AS note_id, column0 || ' hypertension' AS text "
                f"FROM read_csv('{secret}', header = false)")
    con.close()
    db = tmp_path / "out.duckdb"
    result = CliRunner().invoke(cli, ["run", str(SMALL), f"{src}:notes", "--db", str(db), "--backend", "rules"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "file system operations are disabled" in errors[0], result.output
    assert not db.exists() or b"the-secret-line" not in db.read_bytes()


def test_a_sqlite_file_as_a_shard_or_a_source_is_refused_without_reaching_for_an_extension(tmp_path: Path) -> None:
    shard = _user_file(tmp_path, "sqlite")
    result = CliRunner().invoke(cli, ["merge", str(tmp_path / "out.duckdb"), str(shard)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "is a SQLite file, not a crit store" in result.output and "extension" not in result.output.lower()
    result = CliRunner().invoke(cli, ["run", str(SMALL), f"{shard}:t", "--db", str(tmp_path / "o.duckdb"),
                                      "--backend", "rules"])
    assert result.exit_code == 1 and "is a SQLite file" in result.output and "extension" not in result.output.lower()


# ---- units: a number's unit is the one written beside it; one crit cannot read is never the question's ----

UNITS_CRIT = """trial U-1
numeric weight highest "weight" in kg
numeric creat highest "creatinine" in mg/dL assumed
numeric lvef lowest "LVEF" in %
numeric temp highest "temperature" in °C
exclude "heavy": weight > 150 kg
exclude "fever": temp > 38 °C
exclude "renal": creat > 2.5 mg/dL
exclude "low EF": lvef < 30
"""


@pytest.mark.parametrize(("text", "question", "converted"), [
    ("Weight 180 lbs.", "weight", 81.65), ("Weight 176 pounds.", "weight", 79.83), ("Weight 80 kg.", "weight", 80.0),
    ("Weight 12 stone.", "weight", None), ("Temperature 98.6 °F.", "temp", 37.0), ("Temperature 98.6 F.", "temp", 37.0),
    ("Temperature 98.6 degrees Fahrenheit.", "temp", 37.0), ("Temperature 310 K.", "temp", 36.85),
    ("Temperature 37.5 C.", "temp", 37.5), ("Weight 80 and stable.", "weight", None),  # bare: pounds? kg?
    ("Creatinine 1.4.", "creat", 1.4),  # bare, and the question says `assumed`
    ("LVEF 35.", "lvef", 35.0),  # bare, and % has no dimension
])
def test_a_written_unit_is_converted_or_makes_the_value_unknown(tmp_path: Path, text: str, question: str,
                                                                 converted: float | None) -> None:
    import duckdb

    crit_file, notes, db = tmp_path / "u.crit", tmp_path / "u.jsonl", tmp_path / "u.duckdb"
    crit_file.write_text(UNITS_CRIT)
    notes.write_text(json.dumps({"note_id": "n1", "text": text}) + "\n")
    result = CliRunner().invoke(cli, ["run", str(crit_file), str(notes), "--db", str(db), "--backend", "rules"])
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    got, reason = con.execute("SELECT converted, reason FROM answer_values WHERE question = ?", [question]).fetchone()
    con.close()
    if converted is None:
        assert got is None and reason == "unit"
    else:
        assert got == pytest.approx(converted, abs=0.01)


_MASS = ["kg", "g", "mg", "lb", "lbs", "pounds", "oz", "ounces", "kilograms", "grams"]
_NOT_MASS = ["stone", "grain", "pint", "mmHg", "mg/dL", "°F", "°C", "%", "cm", "inches", "IU/L", "mmol/L",
             "gallon", "mL", "bar", "cup"]


@pytest.mark.slow  # 10,000 cases or a real process or disk: CI runs it, the fast suite does not
@settings(max_examples=10_000, deadline=None)
@given(value=st.decimals(min_value="0.1", max_value="999.9", places=1), unit=st.sampled_from(_MASS + _NOT_MASS),
       space=st.sampled_from(["", " "]))
def test_any_number_and_unit_beside_an_analyte_is_converted_right_or_unknown(value, unit: str, space: str) -> None:
    from crit.engine.reading.passages import find_passages
    from crit.engine.reading.reader import decide
    from crit.grammar import units
    from crit.grammar.questions import make_question

    question = make_question("weight", "numeric", "weight", order="highest", unit="kg")
    text = f"Weight {value}{space}{unit}."
    answer = decide(question, text, find_passages(text, question))
    assert answer["value"] == float(value)
    stored = units.convert(answer["value"], answer["unit"], "kg")  # what the rules compare: None is unknown
    expected = units.convert(float(value), unit, "kg")
    if unit in _MASS:
        assert stored == pytest.approx(expected)
    else:
        assert stored is None, (text, answer["unit"])


# ---- JSONL: any line is a note or a bad row ---------------------------------------------------------------

def test_a_deeply_nested_jsonl_line_is_one_bad_row(tmp_path: Path) -> None:
    from crit.engine.notes.reader import read_notes

    path = tmp_path / "n.jsonl"
    path.write_text(json.dumps({"note_id": "ok", "text": "Hypertension."}) + "\n" + "[" * 100_000 + "\n")
    notes, bad = read_notes(path)
    assert [n.note_id for n in notes] == ["ok"]
    assert [b.reason for b in bad] == ["JSON nested too deeply"]


_LINE = st.one_of(st.binary(max_size=60), st.from_regex(rb'\{"note_id": ?"[a-z0-9]{1,4}", ?"text": ?".{0,20}"\}'))


@pytest.mark.slow  # 10,000 cases or a real process or disk: CI runs it, the fast suite does not
@settings(max_examples=200, deadline=None)  # 200 files of 50 lines: 10,000 lines a run
@given(st.lists(_LINE.map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" ")), min_size=50, max_size=50))
def test_any_bytes_in_a_line_are_a_note_or_a_bad_row(tmp_path_factory, lines: list[bytes]) -> None:
    from crit.engine.notes.reader import read_notes

    path = tmp_path_factory.mktemp("jsonl") / "n.jsonl"
    path.write_bytes(b'{"note_id": "first", "text": "Hypertension."}\n' + b"\n".join(lines) + b"\n")
    notes, bad = read_notes(path)
    assert notes[0].note_id == "first"
    assert len(notes) + len(bad) <= 1 + sum(1 for line in lines if line.strip())


# ---- the terminal: no note, id or label drives it ---------------------------------------------------------

ESC_TITLE = "\x1b]0;pwned\x07"
ESC_CLEAR = "\x1b[2J"


def test_escape_sequences_in_notes_and_labels_reach_the_terminal_escaped(tmp_path: Path) -> None:
    crit_file = tmp_path / "t.crit"
    crit_file.write_text(f'trial T-1\nboolean htn "hypertension"\ninclude "htn{ESC_CLEAR}": htn\n')
    notes = tmp_path / "n.jsonl"
    notes.write_text(json.dumps({"note_id": f"n1{ESC_TITLE}", "text": f"Hypertension.{ESC_CLEAR}"}) + "\n")
    db = tmp_path / "t.duckdb"
    assert CliRunner().invoke(cli, ["run", str(crit_file), str(notes), "--db", str(db), "--backend", "rules"]).exit_code == 0
    for args in (["sql", str(db), "select n.note_id, n.text, c.label from notes n join criteria c using (note_id)"],
                 ["compile", str(crit_file)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output
        assert "\\x1b" in result.output


@pytest.mark.slow  # 10,000 cases or a real process or disk: CI runs it, the fast suite does not
@settings(max_examples=10_000, deadline=None)
@given(st.text(max_size=30))
def test_printable_leaves_no_control_character(text: str) -> None:
    import unicodedata

    from crit.engine.cli import printable

    shown = printable(text)
    assert all(ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf") for ch in shown)
    if all(ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf") for ch in text):
        assert shown == text  # printable text is shown as it is


# ---- the report: finite data, and no partial file left ----------------------------------------------------

def _report_store(tmp_path: Path, text: str) -> Path:
    crit_file = tmp_path / "c.crit"
    crit_file.write_text('trial T-1\nnumeric creat highest "creatinine" in mg/dL\nexclude "renal": creat > 2 mg/dL\n')
    notes = tmp_path / "n.jsonl"
    notes.write_text(json.dumps({"note_id": "big", "text": text}) + "\n"
                     + json.dumps({"note_id": "ok", "text": "Creatinine 1.1 mg/dL."}) + "\n")
    db = tmp_path / "r.duckdb"
    assert CliRunner().invoke(cli, ["run", str(crit_file), str(notes), "--db", str(db), "--backend", "rules"]).exit_code == 0
    return db


def test_an_infinite_value_leaves_the_report_s_data_valid_json(tmp_path: Path) -> None:
    import re

    db = _report_store(tmp_path, "Creatinine " + "9" * 308 + " g/dL.")  # finite, but infinite in mg/dL
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", str(db), "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    for blob in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S):
        json.loads(blob, parse_constant=lambda name: pytest.fail(f"{name} in the report's JSON"))
    assert "Infinity" not in html and "NaN" not in html


def test_a_report_that_cannot_be_written_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    import errno

    db = _report_store(tmp_path, "Creatinine 3.1 mg/dL.")
    real = Path.write_text

    def full_disk(self: Path, data: str, *args, **kwargs):  # the disk fills half-way through the write
        if self.name.endswith(".partial"):
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", str(db), "-o", str(out)])
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert not out.exists() and not (tmp_path / "r.html.partial").exists()


# ---- dates before year 1, and which errors name an option --------------------------------------------------

def test_a_window_reaching_before_year_one_does_not_break_the_report(tmp_path: Path) -> None:
    crit_file = tmp_path / "w.crit"
    crit_file.write_text('trial W-1\nboolean mi "myocardial infarction"\nexclude "recent MI": mi within 6 months\n')
    notes = tmp_path / "w.jsonl"
    notes.write_text(json.dumps({"note_id": "a", "patient_id": "P1", "note_date": "0001-01-01",
                                 "text": "Myocardial infarction."}) + "\n"
                     + json.dumps({"note_id": "b", "patient_id": "P1", "note_date": "0001-03-01", "text": "Seen."}) + "\n")
    db = tmp_path / "w.duckdb"
    assert CliRunner().invoke(cli, ["run", str(crit_file), str(notes), "--db", str(db), "--backend", "rules"]).exit_code == 0
    result = CliRunner().invoke(cli, ["report", str(db), "-o", str(tmp_path / "w.html")])
    assert result.exit_code == 0, result.output
    assert "--window-start" not in result.output


def test_only_a_command_s_own_options_are_reported_as_options() -> None:
    from pydantic import BaseModel, ValidationError

    from crit.engine.options import is_option_error
    from crit.trainer.select import SelectConfig

    class Evidence(BaseModel):
        window_start: date

    with pytest.raises(ValidationError) as data_error:
        Evidence(window_start="0001-09-01 (BC)")
    assert not is_option_error(data_error.value)
    with pytest.raises(ValidationError) as option_error:
        SelectConfig(db="x.duckdb", out="o.jsonl", per_type=-1)
    assert is_option_error(option_error.value)


# ---- a server's reply: every field checked, a bad one is an error row ---------------------------------------

def _serve(reply: bytes):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Reply(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Reply)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


_GOOD_CONTENT = json.dumps({"answer": "present", "source": "hypertension"})


@pytest.mark.parametrize(("reply", "problem"), [
    ({"choices": [{"message": {"content": _GOOD_CONTENT}}], "usage": {"prompt_tokens": "many"}}, "usage.prompt_tokens"),
    ({"choices": [{"message": {"content": 12345}}]}, "content"),
    ({"choices": [{"message": {"content": _GOOD_CONTENT}}], "usage": "lots"}, "usage"),
    ({"choices": []}, "choices"),
    ({"choices": [{"message": {"content": _GOOD_CONTENT}}], "usage": {"prompt_tokens": 1e400}}, None),
])
def test_a_misbehaving_server_gives_error_rows_not_a_traceback(reply: dict, problem: str | None) -> None:
    from crit.engine.answering.backends.openai import OpenAIBackend
    from crit.grammar.questions import make_question

    body = json.dumps(reply).encode().replace(b"Infinity", b"1e400")  # 1e400: a number past a float
    server = _serve(body)
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", concurrency=1)
        [answer] = backend.answer("n1", "History of hypertension.", [make_question("htn", "boolean", "hypertension")])
        backend.close()
    finally:
        server.shutdown()
        server.server_close()
    assert answer.error is not None and answer.error.startswith("server: response is not")
    if problem is not None:
        assert problem in answer.error


# ---- windows: checked at `crit check` against the calendar of note dates -----------------------------------

@pytest.mark.parametrize(("window", "shown"), [("1000000000 years", "1,000,000,000 years"),
                                               ("99999999999999999999 days", "100,000,000,000,000,000,000 days"),
                                               ("3000000 years", "3,000,000 years"), ("120000 months", "120,000 months")])
def test_a_window_longer_than_the_calendar_is_an_error_of_check(tmp_path: Path, window: str, shown: str) -> None:
    crit_file = tmp_path / "w.crit"
    crit_file.write_text(f'trial W-1\nboolean mi "myocardial infarction"\nexclude "recent MI": mi within {window}\n')
    result = CliRunner().invoke(cli, ["check", str(crit_file)])
    assert result.exit_code == 1
    assert (f"error[E114]: a window of {shown} is longer than the calendar of note dates (years 1 to 9999)"
            in result.output)
    assert "= hint: a window of at most 9999 years; for no time limit, leave the window out" in result.output


def test_the_longest_window_runs_and_reports_at_both_ends_of_the_calendar(tmp_path: Path) -> None:
    crit_file = tmp_path / "w.crit"
    crit_file.write_text('trial W-1\nboolean mi "myocardial infarction"\nexclude "recent MI": mi within 9999 years\n')
    notes = tmp_path / "w.jsonl"
    notes.write_text("".join(json.dumps({"note_id": n, "patient_id": p, "note_date": d, "text": "Myocardial infarction."})
                             + "\n" for n, p, d in (("a", "P1", "9999-12-31"), ("b", "P2", "0001-01-01"))))
    db = tmp_path / "w.duckdb"
    result = CliRunner().invoke(cli, ["run", str(crit_file), str(notes), "--db", str(db), "--backend", "rules"])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(cli, ["report", str(db), "-o", str(tmp_path / "w.html")]).exit_code == 0


# ---- note paths are literal ---------------------------------------------------------------------------------

def test_a_note_path_is_never_a_pattern(tmp_path: Path) -> None:
    from crit.engine.notes.reader import read_notes
    from crit.grammar.errors import CritError

    for name in ("xa.json", "xb.json"):
        (tmp_path / name).write_text(json.dumps([{"note_id": name, "text": "Hypertension."}]))
    with pytest.raises(CritError, match="not found"):
        read_notes(tmp_path / "x[ab].json")  # once: xa.json and xb.json
    (tmp_path / "x[ab].json").write_text(json.dumps([{"note_id": "literal", "text": "Hypertension."}]))
    with pytest.raises(CritError, match="exact name"):
        read_notes(tmp_path / "x[ab].json")  # DuckDB would read xa.json and xb.json for it
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"note_id": ["p1"], "text": ["Hypertension."]}), tmp_path / "n1.parquet")
    with pytest.raises(CritError, match="not found"):
        read_notes(tmp_path / "n*.parquet")  # once: every match
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "note[1].txt").write_text("Hypertension.")
    (folder / "note1.txt").write_text("Diabetes.")
    notes, bad = read_notes(folder)
    assert {n.note_id: n.text for n in notes} == {"note[1]": "Hypertension.", "note1": "Diabetes."} and not bad


# ---- a full disk: the OS's words are kept, and nothing half-made is left --------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path):
    """A 700 kB tmpfs, where this machine lets the tests mount one (root), else the test skips."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def _many_notes(path: Path, n: int = 400) -> Path:
    path.write_text("".join(json.dumps({"note_id": f"n{i}", "text": f"Creatinine 1.{i % 10} mg/dL, hypertension. " * 40})
                            + "\n" for i in range(n)))
    return path


def test_a_full_disk_ends_the_run_in_one_line_and_its_record_keeps_the_os_error(
        tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crit.engine.store import Store

    # A rules run commits every 2,000 notes; on a 700 kB disk the first such batch would not fit, and the
    # test is of what happens to the batches before the one that fills it.
    monkeypatch.setattr("crit.engine.run.RULES_BATCH_NOTES", 50)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 200_000)
    db = small_disk / "r.duckdb"
    result = CliRunner().invoke(cli, ["run", str(SMALL), str(_many_notes(tmp_path / "n.jsonl")), "--db", str(db),
                                      "--backend", "rules", "--batch-size", "50"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "No space left on device" in result.output and "cannot rollback" not in result.output
    filler.unlink()
    with Store.open(db, read_only=True) as store:
        (status, message), = store.con.execute("SELECT status, message FROM runs").fetchall()
        kept = store.con.execute("SELECT count(*) FROM notes").fetchone()
    assert status == "failed" and "No space left on device" in message
    assert kept and kept[0] > 0  # the batches committed before the disk filled are there


@pytest.mark.slow  # 10,000 cases or a real process or disk: CI runs it, the fast suite does not
def test_a_merge_onto_a_full_disk_leaves_no_store(tmp_path: Path, small_disk: Path) -> None:
    shard = tmp_path / "shard.duckdb"
    run_args = ["run", str(SMALL), str(_many_notes(tmp_path / "n.jsonl", 2000)), "--db", str(shard), "--backend", "rules",
                "--batch-size", "500"]
    assert CliRunner().invoke(cli, run_args).exit_code == 0
    out = small_disk / "merged.duckdb"
    result = CliRunner().invoke(cli, ["merge", str(out), str(shard)])
    assert result.exit_code == 1 and "No space left on device" in result.output, result.output
    assert list(small_disk.iterdir()) == []  # no 0-byte store, no temporary file


# ---- the minor items ---------------------------------------------------------------------------------------

def test_a_date_column_that_is_the_id_column_is_refused_not_ignored(tmp_path: Path) -> None:
    notes = tmp_path / "n.jsonl"
    notes.write_text(json.dumps({"note_id": "2024-01-01", "text": "Hypertension."}) + "\n")
    result = CliRunner().invoke(cli, ["run", str(SMALL), str(notes), "--db", str(tmp_path / "d.duckdb"),
                                      "--backend", "rules", "--date-column", "note_id"])
    assert result.exit_code == 1
    assert "--date-column note_id: that column holds the note id" in result.output


def test_a_store_view_that_reads_a_file_fails_the_report_in_one_line(tmp_path: Path) -> None:
    import duckdb

    db = _report_store(tmp_path, "Creatinine 3.1 mg/dL.")
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n1\n")
    con = duckdb.connect(str(db))
    con.execute(f"CREATE OR REPLACE VIEW attrition AS SELECT * FROM read_csv('{secret}')")
    con.close()
    result = CliRunner().invoke(cli, ["report", str(db), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("error") and len(result.output.strip().splitlines()) == 1, result.output


def test_one_json_object_over_16_mb_is_one_bad_row_not_a_failed_file(tmp_path: Path) -> None:
    from crit.engine.notes.reader import read_notes

    path = tmp_path / "n.json"
    path.write_text(json.dumps([{"note_id": "big", "text": "x" * 17_000_000},
                                {"note_id": "ok", "text": "Hypertension."}]))
    notes, bad = read_notes(path)
    assert [n.note_id for n in notes] == ["ok"] and len(bad) == 1


def test_explain_analyze_is_refused(tmp_path: Path) -> None:
    db = _report_store(tmp_path, "Creatinine 3.1 mg/dL.")
    for statement in ("EXPLAIN ANALYZE SELECT 1", "explain  analyse select * from notes"):
        result = CliRunner().invoke(cli, ["sql", str(db), statement])
        assert result.exit_code == 1 and "EXPLAIN ANALYZE runs the statement" in result.output
    assert CliRunner().invoke(cli, ["sql", str(db), "EXPLAIN SELECT 1"]).exit_code == 0


@pytest.mark.slow  # 10,000 cases or a real process or disk: CI runs it, the fast suite does not
def test_sigterm_marks_the_run_interrupted_and_keeps_its_batches(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    import duckdb

    db = tmp_path / "t.duckdb"
    notes = _many_notes(tmp_path / "n.jsonl", 20_000)  # minutes of work: the signal comes long before the end
    proc = subprocess.Popen([sys.executable, "-c", "from crit.cli import main; main()", "run", str(SMALL), str(notes),
                             "--db", str(db), "--backend", "rules", "--batch-size", "20"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not db.exists():
        time.sleep(0.2)
    time.sleep(10.0)  # some batches committed (spaCy and the vocabularies load first: about 5 s)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    con = duckdb.connect(str(db), read_only=True)
    (status, message), = con.execute("SELECT status, message FROM runs").fetchall()
    kept = con.execute("SELECT count(*) FROM notes").fetchone()
    con.close()
    assert (status, message) == ("interrupted", "terminated (SIGTERM)")
    assert kept is not None and 0 < kept[0] < 20_000


def test_a_backend_that_cannot_start_here_is_said_before_any_note_is_read(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    db = tmp_path / "v.duckdb"
    result = CliRunner().invoke(cli, ["run", str(SMALL), str(ROOT / "tests/fixtures/run/notes.jsonl"), "--db", str(db),
                                      "--backend", "vllm", "--model", str(tmp_path)])
    assert result.exit_code == 1 and "vLLM is not installed" in result.output and "pip install" in result.output
    assert not db.exists()


# ---- a store's file name is not a name in its SQL ----------------------------------------------------------

@pytest.mark.parametrize("name", ["x", "o"])
def test_a_store_named_like_an_alias_of_the_rules_sql_runs(tmp_path: Path, name: str) -> None:
    """DuckDB names a database by its file: x.duckdb is catalog x, and the rules' `x.answer.value` once
    read as catalog x, table answer, so every run into x.duckdb failed after all its answers were stored."""
    db = tmp_path / f"{name}.duckdb"
    result = CliRunner().invoke(cli, ["run", str(ROOT / "criteria/aristotle.crit"),
                                      str(ROOT / "examples/mtsamples-sample.jsonl"), "--db", str(db), "--backend", "rules",
                                      "--limit", "3"])
    assert result.exit_code == 0, result.output


def test_assumed_needs_a_unit_to_assume(tmp_path: Path) -> None:
    crit_file = tmp_path / "a.crit"
    crit_file.write_text('trial A-1\nnumeric score value "frailty score" assumed\ninclude "frail": score > 3\n')
    result = CliRunner().invoke(cli, ["check", str(crit_file)])
    assert result.exit_code == 1
    assert "error[E115]: 'score' says `assumed` but names no unit to assume" in result.output
    assert "= hint: write the unit first: in mg/dL assumed" in result.output


def test_a_shard_whose_schema_version_is_not_a_number_is_refused_in_one_line(tmp_path: Path) -> None:
    import duckdb

    shard = tmp_path / "shard.duckdb"
    con = duckdb.connect(str(shard))
    con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR); INSERT INTO meta VALUES ('schema_version', 'three')")
    con.close()
    result = CliRunner().invoke(cli, ["merge", str(tmp_path / "out.duckdb"), str(shard)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "its schema version 'three' is not a whole number" in result.output
