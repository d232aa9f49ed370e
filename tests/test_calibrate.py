"""crit calibrate: a trust profile measured on labelled notes with a scripted model, in both directions."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from crit.engine.answering.trust import load_profile
from crit.engine.eligibility import load_plan
from crit.engine.run import run
from crit.trainer.calibrate import LabelledSet, calibrate, default_sets, write_profile
from tests.conftest import ARISTOTLE, ScriptedFactory

ROOT = Path(__file__).resolve().parent.parent
# The rules read each as an unsure plain mention of atrial fibrillation ("named").
TEXTS = [f"Visit {i}. The patient has atrial fibrillation, rate controlled." for i in range(8)]


def _set(tmp_path: Path, af_label: str) -> LabelledSet:
    notes, labels = tmp_path / "notes.jsonl", tmp_path / "labels.jsonl"
    notes.write_text("".join(json.dumps({"note_id": f"n{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    labels.write_text("".join(json.dumps({"note_id": f"n{i}", "question": "af", "kind": "boolean", "answer": af_label,
                                          "unit": None}) + "\n" for i in range(len(TEXTS))))
    return LabelledSet(name="af", criteria=ARISTOTLE, notes=str(notes), labels=labels)


def _says_absent(text: str, question) -> str:
    return json.dumps({"answer": "absent", "source": text.split("\n")[0]})


def test_a_model_right_where_the_rules_are_wrong_is_trusted_there_and_decides_in_a_run(tmp_path: Path) -> None:
    factory = ScriptedFactory(script=_says_absent)
    profile, outcomes = calibrate(factory, [_set(tmp_path, "absent")])
    (cell,) = profile.cells
    assert (cell.kind, cell.reading, cell.pairs, cell.wins, cell.losses, cell.decides) == ("boolean", "named", 8, 8, 0, "model")
    assert all(o.model_right and not o.rules_right for o in outcomes)
    assert profile.backend_identity == "scripted-1" and "af: 8 pairs" in profile.measured_on[0]

    path = tmp_path / "scripted.trust.json"
    write_profile(profile, outcomes, path)
    assert len(path.with_suffix(".outcomes.jsonl").read_text().splitlines()) == 8
    summary = run(load_plan(str(ARISTOTLE)), _set(tmp_path, "absent").notes, tmp_path / "r.duckdb",
                  ScriptedFactory(script=_says_absent), trust=load_profile(path))
    assert summary.by_method.get("model") == 8  # the af of every note: the model's "absent" decided


def test_a_model_wrong_where_the_rules_are_right_is_never_trusted(tmp_path: Path) -> None:
    profile, outcomes = calibrate(ScriptedFactory(script=_says_absent), [_set(tmp_path, "present")])
    (cell,) = profile.cells
    assert (cell.wins, cell.losses, cell.decides) == (0, 8, "rules") and not profile.ever_trusted
    factory = ScriptedFactory(script=_says_absent)
    summary = run(load_plan(str(ARISTOTLE)), _set(tmp_path, "present").notes, tmp_path / "r.duckdb", factory,
                  trust=profile)
    assert factory.backends == [] and "not loaded" in summary.model_use


def test_the_default_sets_are_dev_only() -> None:
    names = [s.name for s in default_sets(ROOT)]
    assert names[0] == "tests/gold dev" and not any(t in " ".join(names) for t in ("copd", "oncology", "stroke"))
    from crit.trainer.evaluate import gold_split

    assert all(gold_split(n) == "dev" for n in default_sets(ROOT)[0].note_ids or ())


def test_crit_calibrate_names_a_label_of_a_question_the_criteria_lack(tmp_path: Path) -> None:
    from crit.cli import cli

    labelled = _set(tmp_path, "absent")
    labelled.labels.write_text(json.dumps({"note_id": "n0", "question": "nope", "kind": "boolean", "answer": "absent"}) + "\n")
    result = CliRunner().invoke(cli, ["calibrate", "--backend", "rules", "--out", str(tmp_path / "p.json"),
                                      "--set", str(ARISTOTLE), labelled.notes, str(labelled.labels)])
    assert result.exit_code == 1 and "question 'nope' is not in" in result.output and "Traceback" not in result.output


def test_crit_calibrate_refuses_an_output_folder_that_does_not_exist_before_it_measures(tmp_path: Path) -> None:
    """A calibration is many minutes of model time: a bad --out is said at once, not after the work."""
    from crit.cli import cli

    labelled = _set(tmp_path, "absent")
    out = tmp_path / "no-such-folder" / "p.json"
    result = CliRunner().invoke(cli, ["calibrate", "--backend", "rules", "--out", str(out),
                                      "--set", str(ARISTOTLE), labelled.notes, str(labelled.labels)])
    assert result.exit_code == 1 and "no-such-folder" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output and "af: " not in result.output  # no note was read
    assert not out.parent.exists()
