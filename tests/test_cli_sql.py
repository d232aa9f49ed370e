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
