"""FHIR R4 notes (crit.engine.notes.fhir): a Bundle, a lone DocumentReference, NDJSON of resources.

tests/fixtures/fhir/bundle.json is a hand-written Bundle: two Patients, five notes (four
DocumentReferences, one in a Binary, one dated by its encounter; a DiagnosticReport with a
presentedForm) and a scanned PDF, which is a bad row of its own. No model is loaded.
"""

from __future__ import annotations

import base64
import json
import socket
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from crit.cli import cli
from crit.engine.notes.reader import read_notes
from crit.grammar.errors import CritError

ROOT = Path(__file__).resolve().parent.parent
FHIR = ROOT / "tests" / "fixtures" / "fhir"
NOTE = "Atrial fibrillation. Creatinine 1.2 mg/dL."  # a bad row's reason must never quote this


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def document(rid: str, attachment: dict[str, Any], patient: str | None = "p1", **more: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "DocumentReference", "id": rid, "status": "current",
                                "date": "2024-05-01T10:00:00Z", "content": [{"attachment": attachment}], **more}
    if patient:
        resource["subject"] = {"reference": f"Patient/{patient}"}
    return resource


def bundle(tmp_path: Path, *resources: dict[str, Any], name: str = "bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "searchset",
                                "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": r} for i, r in enumerate(resources)]}))
    return path


def test_the_bundle_reads_into_dated_notes_of_two_patients() -> None:
    notes, bad = read_notes(FHIR / "bundle.json")
    assert [(n.note_id, n.patient_id, n.note_date, n.sex, n.row) for n in notes] == [
        ("doc-af-101", "pt-1001", date(2024, 1, 15), "male", 3),
        ("doc-af-102", "pt-1001", date(2024, 3, 2), "male", 4),
        ("doc-hf-201", "pt-1002", date(2023, 11, 20), "female", 5),  # dated by context.period.start
        ("doc-hf-202", "pt-1002", date(2024, 2, 10), "female", 6),  # text in a Binary of the Bundle
        ("lab-301", "pt-1001", date(2024, 3, 1), "male", 9),  # a DiagnosticReport's presentedForm
    ]
    assert notes[0].text.startswith("CARDIOLOGY CONSULTATION") and "atrial fibrillation" in notes[0].text
    assert notes[3].text.startswith("# Discharge summary")
    assert [(b.row, b.note_id, b.where, b.reason) for b in bad] == [
        (8, "doc-scan-203", "entry 8 (DocumentReference/doc-scan-203)",
         "attachment content type application/pdf is not read: crit reads text/plain or text/markdown (UTF-8)")]


def test_a_lone_document_reference_is_one_note() -> None:
    notes, bad = read_notes(FHIR / "document.json")
    assert bad == []
    assert [(n.note_id, n.patient_id, n.note_date, n.sex) for n in notes] == [
        ("doc-solo-1", "pt-1003", date(2023, 7, 4), None)]  # its Patient is not in the file: no sex


@pytest.mark.parametrize("attachment, reason", [
    ({"contentType": "text/plain", "data": "not base64!"}, "attachment data is not valid base64"),
    ({"contentType": "text/plain", "data": b64(b"Atrial fibrillation \xff\xfe")}, "attachment text is not UTF-8 (byte 20)"),
    ({"contentType": "text/plain"}, "attachment has neither data nor url"),
    ({"contentType": "text/html", "data": b64(NOTE)},
     "attachment content type text/html is not read: crit reads text/plain or text/markdown (UTF-8)"),
    ({"contentType": "text/plain; charset=ISO-8859-1", "data": b64(NOTE)},
     "attachment content type text/plain; charset=iso-8859-1 is not read: crit reads text/plain or text/markdown (UTF-8)"),
    ({"data": b64(NOTE)}, "attachment content type (none) is not read: crit reads text/plain or text/markdown (UTF-8)"),
    ({"contentType": "text/plain", "url": "Binary/absent"},
     "attachment by URL is not read: crit never fetches over the network"),
])
def test_a_bad_attachment_is_a_named_bad_row_and_the_others_run(tmp_path: Path, attachment: dict[str, Any],
                                                                reason: str) -> None:
    good = document("good-1", {"contentType": "text/plain", "data": b64(NOTE)})
    path = bundle(tmp_path, {"resourceType": "Patient", "id": "p1", "gender": "female"},
                  document("bad-2", attachment), good)
    notes, bad = read_notes(path)
    assert [(n.note_id, n.text, n.sex) for n in notes] == [("good-1", NOTE, "female")]
    assert [(b.where, b.note_id, b.reason) for b in bad] == [("entry 2 (DocumentReference/bad-2)", "bad-2", reason)]
    assert "fibrillation" not in bad[0].describe()


def test_an_attachment_by_url_is_refused_without_touching_the_network(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("crit tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    path = bundle(tmp_path, document("remote-1", {"contentType": "text/plain",
                                                  "url": "https://ehr.example.org/fhir/Binary/remote-1"}))
    notes, bad = read_notes(path)
    assert notes == []
    assert [b.describe() for b in bad] == [
        "entry 1 (DocumentReference/remote-1) (note_id 'remote-1'): "
        "attachment by URL is not read: crit never fetches over the network"]


def test_a_pdf_beside_a_text_rendition_reads_the_text(tmp_path: Path) -> None:
    doc = document("two-forms", {"contentType": "application/pdf", "data": b64(b"%PDF-1.4")})
    doc["content"].append({"attachment": {"contentType": "text/markdown", "data": b64(NOTE)}})
    notes, bad = read_notes(bundle(tmp_path, doc))
    assert bad == [] and [n.text for n in notes] == [NOTE]


def test_patients_are_found_by_full_url_and_a_note_without_one_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    entries = [
        {"fullUrl": "urn:uuid:7f3e", "resource": {"resourceType": "Patient", "gender": "other"}},
        {"resource": {**document("d1", {"contentType": "text/plain", "data": b64(NOTE)}, patient=None),
                      "subject": {"reference": "urn:uuid:7f3e"}}},
        {"resource": document("d2", {"contentType": "text/plain", "data": b64(NOTE)}, patient=None)},
        {"resource": document("d3", {"contentType": "text/plain", "data": b64(NOTE)}, status="entered-in-error")},
        {"resource": {**document("d4", {"contentType": "text/plain", "data": b64(NOTE)}, patient=None),
                      "subject": {"reference": "Group/cohort-1"}}},
    ]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    notes, bad = read_notes(path)
    assert [(n.note_id, n.patient_id, n.sex) for n in notes] == [("d1", "7f3e", None)]  # gender other: no sex
    assert [(b.note_id, b.reason) for b in bad] == [
        ("d2", "no patient id (column 'subject' is empty)"),
        ("d3", "status entered-in-error: the document was withdrawn"),
        ("d4", "subject 'Group/cohort-1' is not a Patient reference crit can read"),
    ]


def test_an_ndjson_bulk_export_reads_with_its_patients(tmp_path: Path) -> None:
    lines = [
        json.dumps(document("n1", {"contentType": "text/plain", "data": b64(NOTE)}, patient="p9")),
        "not json",
        json.dumps({"resourceType": "Patient", "id": "p9", "gender": "male"}),  # after the note that names it
    ]
    path = tmp_path / "export.ndjson"
    path.write_text("\n".join(lines) + "\n")
    notes, bad = read_notes(path)
    assert [(n.note_id, n.patient_id, n.note_date, n.sex, n.row) for n in notes] == [
        ("n1", "p9", date(2024, 5, 1), "male", 1)]
    assert [(b.where, b.reason) for b in bad] == [("line 2", "not valid JSON")]


def test_json_that_is_not_fhir_reads_as_before(tmp_path: Path) -> None:
    array = tmp_path / "notes.json"
    array.write_text(json.dumps([{"note_id": "a", "text": NOTE, "patient_id": "p1", "date": "2024-01-02"},
                                 {"note_id": "b", "text": NOTE}]))
    notes, bad = read_notes(array)
    assert [(n.note_id, n.patient_id) for n in notes] == [("a", "p1")]
    assert [b.reason for b in bad] == ["no patient id (column 'patient_id' is empty)"]
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"note_id": "solo", "text": NOTE}))
    assert [n.note_id for n in read_notes(one)[0]] == ["solo"]
    plain = tmp_path / "notes.ndjson"
    plain.write_text(json.dumps({"note_id": "x", "text": NOTE}) + "\n")
    assert [n.note_id for n in read_notes(plain)[0]] == ["x"]


@pytest.mark.parametrize("content, message", [
    ('{"resourceType": "Observation", "id": "o1"}',
     "a FHIR Observation: crit reads notes from a Bundle, a DocumentReference, a DiagnosticReport, or NDJSON of them"),
    ('{"resourceType": "Bundle", "type": "collection", "entry": []}',
     "the Bundle holds no DocumentReference, nor a DiagnosticReport with a presentedForm"),
    ('{"resourceType": "Bundle", "entry": {"resource": {}}}', "the Bundle's entry is not a list"),
    ('{"resourceType": "Bundle"}\n{"resourceType": "Bundle"}\n',
     "holds more than one JSON value: write resources one per line as .ndjson"),
])
def test_a_file_that_is_not_fhir_crit_reads_is_one_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(CritError) as e:
        read_notes(path)
    assert str(e.value) == f"cannot read FHIR notes from '{path}': {message}"


def test_the_cli_refuses_a_non_fhir_resource_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "obs.json"
    path.write_text('{"resourceType": "Observation", "id": "o1"}')
    result = CliRunner().invoke(cli, ["run", str(ROOT / "criteria" / "aristotle.crit"), str(path),
                                      "--db", str(tmp_path / "x.duckdb"), "--backend", "rules"])
    assert result.exit_code == 1
    assert "a FHIR Observation" in result.output and "Traceback" not in result.output


def test_crit_run_screens_the_bundle_by_patient(tmp_path: Path) -> None:
    db = tmp_path / "fhir.duckdb"
    result = CliRunner().invoke(cli, ["run", str(ROOT / "criteria" / "aristotle.crit"), str(FHIR / "bundle.json"),
                                      "--db", str(db), "--backend", "rules"])
    assert result.exit_code == 0, result.output
    assert "entry 8 (DocumentReference/doc-scan-203)" in result.output and "application/pdf" in result.output
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT note_id, patient_id, note_date, sex FROM notes ORDER BY note_id").fetchall()
    assert rows == [
        ("doc-af-101", "pt-1001", date(2024, 1, 15), "male"),
        ("doc-af-102", "pt-1001", date(2024, 3, 2), "male"),
        ("doc-hf-201", "pt-1002", date(2023, 11, 20), "female"),
        ("doc-hf-202", "pt-1002", date(2024, 2, 10), "female"),
        ("lab-301", "pt-1001", date(2024, 3, 1), "male"),
    ]
    assert sorted(p for (p,) in con.execute("SELECT patient_id FROM patient_eligibility").fetchall()) == [
        "pt-1001", "pt-1002"]
