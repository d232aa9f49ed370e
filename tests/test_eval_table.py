"""crit eval's table names each source as given, brackets included (they are not rich markup)."""

from rich.console import Console

from crit.trainer.evaluate import MetricRow, table


def test_schema_variants_stay_apart_in_the_table() -> None:
    rows = [
        MetricRow(source="embedded[enum]", question="af", metric="balanced_acc", value=0.5, ci_low=0.4, ci_high=0.6, n=10),
        MetricRow(source="embedded[truefalse]", question="af", metric="balanced_acc", value=0.3, ci_low=0.2, ci_high=0.4, n=10),
    ]
    console = Console(record=True, width=120)
    console.print(table(rows))
    text = console.export_text()
    assert "embedded[enum]" in text and "embedded[truefalse]" in text
    assert "0.50 [0.40-0.60]" in text and "0.30 [0.20-0.40]" in text


def test_eval_of_a_store_without_the_gold_notes_says_so(tmp_path) -> None:
    """Not 0.00 everywhere: a store that holds none of the gold notes is named, with the command that fills it."""
    from pathlib import Path

    from click.testing import CliRunner

    import crit
    from crit.cli import cli

    root = Path(__file__).resolve().parent.parent
    db = tmp_path / "sample.duckdb"
    crit.run(crit.load(root / "criteria" / "aristotle.crit"), root / "examples" / "mtsamples-sample.jsonl", db=db,
             backend="rules", limit=2)
    result = CliRunner().invoke(cli, ["eval", str(root / "tests" / "gold" / "aristotle_gold.jsonl"), "--db", str(db)])
    assert result.exit_code == 1 and "holds none of the 30 gold notes" in result.output
    assert "Traceback" not in result.output
