"""FHIR R4 notes: a Bundle, a lone DocumentReference or DiagnosticReport, or NDJSON of resources (bulk export).

Each DocumentReference, and each DiagnosticReport with a presentedForm, is one note:

- note id = the resource's `id`;
- text = its first attachment in a form crit reads (text/plain or text/markdown, UTF-8), from the
  attachment's base64 `data`, or from a Binary resource in the same Bundle that its `url` names
  (`Binary/ID`, or an entry's fullUrl). Any other url is refused: crit never fetches over the network;
- patient id = the Patient that `subject` names (`Patient/123` -> `123`, or a Bundle entry's fullUrl);
- sex = that Patient's `gender` (male / female) when the Patient is in the same source;
- note date = `date` (DocumentReference) or `effectiveDateTime` / `effectivePeriod.start` / `issued`
  (DiagnosticReport), else `context.period.start`, as written: the note reader checks it.

Other resources (Patient, Binary, Observation, ...) are read for the references above or skipped.
A document that cannot be a note (an attachment that is not base64, not UTF-8, of another content
type, only a URL, or no attachment) is a Document with a `problem`, which the note reader records as
a bad row; the others still run. A file that is not FHIR is one FhirError. Nothing here quotes a
note's text. A JSON file is read whole (a Bundle is one JSON value); NDJSON is streamed, twice
(Patients first, so a note can name its patient's sex).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

MAX_BYTES = 1 << 30  # a JSON file is parsed whole; larger is a broken export (split it, or use NDJSON)

DOCUMENTS = ("DocumentReference", "DiagnosticReport")
TEXT_TYPES = ("text/plain", "text/markdown")

# A reference to a Patient: relative (Patient/123), absolute (https://.../Patient/123), versioned or not.
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")

# (line, object or None, problem) per NDJSON line: what the note reader's JSONL reading gives.
Lines = Callable[[], Iterator[tuple[int, dict[str, Any] | None, str | None]]]


class FhirError(ValueError):
    """The file is not FHIR crit can read (the message says why, never quoting note text)."""


class Document(NamedTuple):
    row: int  # the Bundle entry (1-based), the NDJSON line, or 1 for a lone resource
    where: str  # "entry 3 (DocumentReference/doc-7)"
    note_id: str | None
    text: str | None
    patient_id: str | None
    date: object  # as written (a string, normally); the note reader parses and checks it
    sex: str | None  # "male" / "female", or None when the Patient is absent or says neither
    problem: str | None  # why this document cannot be a note; None when it can


@dataclass
class _Index:
    """What documents refer to: Patients (id -> gender, fullUrl -> id) and Binaries (reference -> resource)."""

    genders: dict[str, str | None] = field(default_factory=dict)
    patient_urls: dict[str, str] = field(default_factory=dict)
    binaries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, resource: dict[str, Any], full_url: object = None) -> None:
        kind, rid = resource.get("resourceType"), resource.get("id")
        rid = rid if isinstance(rid, str) and rid else None
        url = full_url if isinstance(full_url, str) and full_url else None
        if kind == "Patient":
            pid = rid or (url.removeprefix("urn:uuid:") if url else None)
            if pid is None:
                return
            gender = resource.get("gender")
            self.genders[pid] = gender if gender in ("male", "female") else None  # other / unknown: no sex
            if url:
                self.patient_urls[url] = pid
        elif kind == "Binary":
            for key in (f"Binary/{rid}" if rid else None, url):
                if key:
                    self.binaries[key] = resource


@dataclass
class Source:
    """A FHIR source's documents: `documents()` yields them (again on each call), in source order."""

    documents: Callable[[], Iterator[Document]]
    count: int  # documents, good and bad
    names_patients: bool  # some document names a patient: then one that does not is a bad row


def read_json(path: Path) -> Source:
    """A Bundle, or one DocumentReference / DiagnosticReport, from a JSON file; FhirError when it is neither."""
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise FhirError(f"larger than {MAX_BYTES:,} bytes, and a JSON file is read whole: export NDJSON instead")
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise FhirError(f"not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            raise FhirError("holds more than one JSON value: write resources one per line as .ndjson") from None
        raise FhirError(f"not one JSON value ({e.msg}, line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise FhirError("JSON nested too deeply") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("resourceType"), str):
        raise FhirError("not a FHIR resource (no resourceType)")
    kind = obj["resourceType"]
    index = _Index()
    if kind in DOCUMENTS:
        docs = [_document(1, _name(obj), obj, index)]
    elif kind == "Bundle":
        docs = list(_bundle(obj, index))
    else:
        raise FhirError(f"a FHIR {kind[:40]}: crit reads notes from a Bundle, a DocumentReference, "
                        "a DiagnosticReport, or NDJSON of them")
    if not docs:
        raise FhirError("the Bundle holds no DocumentReference, nor a DiagnosticReport with a presentedForm")
    return Source(documents=lambda: iter(docs), count=len(docs), names_patients=any(d.patient_id for d in docs))


def _bundle(bundle: dict[str, Any], index: _Index) -> Iterator[Document]:
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FhirError("the Bundle's entry is not a list")
    # Patients and Binaries first: a document may come before the Patient it names.
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            index.add(entry["resource"], entry.get("fullUrl"))
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            yield Document(n, f"entry {n}", None, None, None, None, None, "the entry is not a JSON object")
            continue
        resource = entry.get("resource")
        if resource is None:  # a history Bundle's deleted entry, a transaction response: nothing to read
            continue
        if not isinstance(resource, dict):
            yield Document(n, f"entry {n}", None, None, None, None, None, "the entry's resource is not a JSON object")
            continue
        if _is_document(resource):
            yield _document(n, f"entry {n} ({_name(resource)})", resource, index)


def read_ndjson(lines: Lines) -> Source:
    """Resources one per line (a FHIR bulk export): two passes over `lines`, Patients and Binaries first."""
    index = _Index()
    count, names_patients = 0, False
    for _, obj, _problem in lines():
        if obj is None:
            count += 1  # a line that is not JSON is a bad row of its own
            continue
        index.add(obj, None)
        if _is_document(obj):
            count += 1
            subject = obj.get("subject")
            names_patients = names_patients or (isinstance(subject, dict) and bool(subject.get("reference")))
    if count == 0:
        raise FhirError("holds no DocumentReference, nor a DiagnosticReport with a presentedForm")

    def documents() -> Iterator[Document]:
        for line, obj, problem in lines():
            if obj is None:
                yield Document(line, f"line {line}", None, None, None, None, None, problem)
            elif _is_document(obj):
                yield _document(line, f"line {line} ({_name(obj)})", obj, index)

    return Source(documents=documents, count=count, names_patients=names_patients)


def _is_document(resource: dict[str, Any]) -> bool:
    kind = resource.get("resourceType")
    # A DiagnosticReport without presentedForm is coded results, not a note.
    return kind == "DocumentReference" or (kind == "DiagnosticReport" and "presentedForm" in resource)


def _name(resource: dict[str, Any]) -> str:
    rid = resource.get("id")
    kind = str(resource.get("resourceType"))[:40]
    return f"{kind}/{rid[:64]}" if isinstance(rid, str) and rid else kind


def _document(row: int, where: str, resource: dict[str, Any], index: _Index) -> Document:
    rid = resource.get("id")
    note_id = rid if isinstance(rid, str) and rid.strip() else None
    patient_id, problem = _subject(resource.get("subject"), index)
    date = _date(resource)
    sex = index.genders.get(patient_id) if patient_id else None
    text = None
    if problem is None and resource.get("status") == "entered-in-error":
        problem = "status entered-in-error: the document was withdrawn"
    if problem is None:
        attachments = _attachments(resource)
        text, problem = _text(attachments, index)
    return Document(row, where, note_id, text, patient_id, date, sex, problem)


def _subject(subject: object, index: _Index) -> tuple[str | None, str | None]:
    """(patient id, problem): no subject is no patient; a subject that names no Patient is a problem."""
    if subject is None:
        return None, None
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str) or not reference.strip():
        return None, None  # an identifier or display only: the note stands alone (or is a bad row, see Source)
    if reference in index.patient_urls:
        return index.patient_urls[reference], None
    m = _PATIENT_REF.search(reference)
    if m is None:
        return None, f"subject {reference[:80]!r} is not a Patient reference crit can read"
    return m.group(1), None


def _date(resource: dict[str, Any]) -> object:
    """The note date as written: the document's own date, else its clinical context's period start."""
    for key in ("date", "effectiveDateTime", "issued"):
        if resource.get(key) is not None:
            return resource[key]
    for holder in (resource.get("effectivePeriod"), _get(resource, "context", "period")):
        if isinstance(holder, dict) and holder.get("start") is not None:
            return holder["start"]
    return None


def _get(obj: object, *keys: str) -> object:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _attachments(resource: dict[str, Any]) -> list[object]:
    if resource.get("resourceType") == "DiagnosticReport":
        forms = resource.get("presentedForm")
        return forms if isinstance(forms, list) else [forms]
    content = resource.get("content")
    return [c.get("attachment") if isinstance(c, dict) else c for c in content] if isinstance(content, list) else []


def _text(attachments: list[object], index: _Index) -> tuple[str | None, str | None]:
    """(text, None) from the first attachment crit reads; (None, why) when none is readable.

    A document may carry its note in several forms (a PDF and plain text): the first text one is read,
    and the others are only named when none is."""
    if not attachments:
        return None, "no attachment (content[].attachment is missing)"
    kinds: list[str] = []
    for attachment in attachments:
        if not isinstance(attachment, dict):
            return None, "an attachment is not a JSON object"
        data, content_type, url = attachment.get("data"), attachment.get("contentType"), attachment.get("url")
        if data is None and isinstance(url, str) and url:
            binary = index.binaries.get(url)  # Binary/ID or a fullUrl in the same Bundle; never the network
            if binary is None:
                return None, "attachment by URL is not read: crit never fetches over the network"
            data, content_type = binary.get("data"), content_type or binary.get("contentType")
        problem = _content_type(content_type)
        if problem is not None:
            kinds.append(problem)
            continue
        if data is None:
            return None, "attachment has neither data nor url" if not url else "the Binary it names holds no data"
        return _decode(data)
    return None, (f"attachment content type {' and '.join(dict.fromkeys(kinds))} is not read: "
                  f"crit reads {' or '.join(TEXT_TYPES)} (UTF-8)")


def _content_type(value: object) -> str | None:
    """None for a type crit reads; else what the type is, for the bad row's reason."""
    if not isinstance(value, str) or not value.strip():
        return "(none)"
    media, *params = [p.strip().lower() for p in value.split(";")]
    if media not in TEXT_TYPES:
        return media[:60]
    for param in params:
        name, _, arg = param.partition("=")
        if name.strip() == "charset" and arg.strip().strip('"') not in ("utf-8", "utf8", "us-ascii"):
            return f"{media}; charset={arg.strip()[:30]}"
    return None


def _decode(data: object) -> tuple[str | None, str | None]:
    if not isinstance(data, str):
        return None, "attachment data is not base64 text"
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)  # FHIR allows whitespace in base64
    except (binascii.Error, ValueError):
        return None, "attachment data is not valid base64"
    try:
        return raw.decode("utf-8").removeprefix("\ufeff"), None
    except UnicodeDecodeError as e:
        return None, f"attachment text is not UTF-8 (byte {e.start})"
