"""`crit sql` prints the store's values as they are: data is never read as rich markup."""

from pathlib import Path

import duckdb
from click.testing import CliRunner

from crit.cli import cli


def test_sql_prints_bracketed_values_verbatim(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create table t as select 'embedded[enum]' as source, '[b]x[/b]' as s")
    result = CliRunner().invoke(cli, ["sql", str(db), "select * from t"])
    assert result.exit_code == 0, result.output
    assert "embedded[enum]" in result.output and "[b]x[/b]" in result.output


def test_sql_error_is_one_message(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    duckdb.connect(str(db)).close()
    result = CliRunner().invoke(cli, ["sql", str(db), "select * from nope"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "nope" in result.output


def _wide_store(tmp_path: Path, rows: int = 500) -> Path:
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"create table t as select i as id, repeat('x', 300) as wide, 'note ' || i as label "
                    f"from range({rows}) r(i)")
    return db


def test_line_mode_puts_each_column_on_its_own_line(tmp_path: Path) -> None:
    db = _wide_store(tmp_path)
    result = CliRunner().invoke(cli, ["sql", str(db), "select id, label from t where id < 2 order by id", "--line"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:5] == ["   id = 0", "label = note 0", "", "   id = 1", "label = note 1"]


def test_table_cells_are_capped_and_rows_counted_past_the_display_cap(tmp_path: Path) -> None:
    db = _wide_store(tmp_path)
    result = CliRunner().invoke(cli, ["sql", str(db), "select * from t order by id", "--max-width", "12",
                                      "--max-rows", "5"])
    assert result.exit_code == 0, result.output
    assert "xxxxxxxxxxx…" in result.output and "x" * 13 not in result.output
    assert "note 4" in result.output and "note 5" not in result.output
    assert "500 row(s) (showing the first 5" in result.output


def test_parameters_are_bound_not_spliced(tmp_path: Path) -> None:
    db = _wide_store(tmp_path)
    result = CliRunner().invoke(cli, ["sql", str(db), "select label from t where id = $id or label = $label",
                                      "-p", "id", "7", "-p", "label", "note 9' or 1=1 --"])
    assert result.exit_code == 0, result.output
    assert "note 7" in result.output and "1 row(s)" in result.output


def test_every_row_exports_to_csv_and_parquet(tmp_path: Path) -> None:
    import csv

    import pyarrow.parquet as pq

    db = _wide_store(tmp_path, rows=25_000)
    runner = CliRunner()
    result = runner.invoke(cli, ["sql", str(db), "select id, label from t", "--parquet", str(tmp_path / "t.parquet")])
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 25_000
    result = runner.invoke(cli, ["sql", str(db), "select id, label from t order by id", "--csv", str(tmp_path / "t.csv")])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader((tmp_path / "t.csv").open()))
    assert rows[0] == ["id", "label"] and rows[1] == ["0", "note 0"] and len(rows) == 25_001
    piped = runner.invoke(cli, ["sql", str(db), "select id from t where id < 2 order by id", "--csv"])
    assert piped.output.splitlines()[:3] == ["id", "0", "1"]
    both = runner.invoke(cli, ["sql", str(db), "select 1", "--csv", "--json"])
    assert both.exit_code == 2 and "choose one of" in both.output
