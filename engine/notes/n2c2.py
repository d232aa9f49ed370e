"""The n2c2 2018 track-1 layout: one XML file per patient, its notes separated by "Record date:" lines.

    <PatientMatching>
      <TEXT><![CDATA[
    Record date: 2068-02-04
    ...the first note...
    ****************************************************************
    Record date: 2069-04-07
    ...the next note...
      ]]></TEXT>
      <TAGS><ABDOMINAL met="not met" /> ... </TAGS>
    </PatientMatching>

`records` splits one file into its notes (patient id = the file's stem, note id =
stem-N in file order, note date = the record date). `tags` reads the gold
met / not met labels a file carries, for comparing crit's per-patient criteria
with them. The real n2c2 text is under a data-use agreement: crit ships only a
synthetic fixture in this layout (tests/fixtures/n2c2).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import NamedTuple

MAX_BYTES = 20_000_000  # one patient's record; more is a broken export

_RECORD_DATE = re.compile(r"^[ \t]*Record date:[ \t]*(\S+)[ \t]*$", re.MULTILINE)
_SEPARATOR = re.compile(r"\n?[ \t]*\*{10,}[ \t]*\n?\s*$")


class Record(NamedTuple):
    number: int  # 1-based, in file order
    date: str | None  # as written after "Record date:" (checked by the note reader)
    text: str


class N2c2Error(ValueError):
    """The file is not in the n2c2 layout (the message says why, never quoting note text)."""


def _root(path: Path) -> ElementTree.Element:
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise N2c2Error(f"larger than {MAX_BYTES:,} bytes")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        # The layout has none; refusing them keeps entity expansion out of the reader.
        raise N2c2Error("declares a DOCTYPE or entities, which the n2c2 layout never does")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as e:
        raise N2c2Error(f"not well-formed XML ({e})") from None


def records(path: Path) -> list[Record]:
    """The notes of one patient file, in order; N2c2Error when the file is not in the layout."""
    root = _root(path)
    text_node = root.find("TEXT")
    if text_node is None or not (text_node.text or "").strip():
        raise N2c2Error("has no <TEXT> element with notes in it")
    text = text_node.text or ""
    starts = list(_RECORD_DATE.finditer(text))
    if not starts:
        return [Record(1, None, text.strip())]
    found = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = _SEPARATOR.sub("", text[match.start() : end]).strip()
        found.append(Record(i + 1, match.group(1), body))
    return found


def tags(path: Path) -> dict[str, str]:
    """criterion -> 'met' / 'not met', as the file's <TAGS> say (empty when it has none)."""
    node = _root(path).find("TAGS")
    return {} if node is None else {t.tag: t.attrib.get("met", "") for t in node}
