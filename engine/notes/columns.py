"""Which column of a table of notes holds what: the usual names, the columns a user names, and sex spellings.

Light on purpose (no DuckDB): the command line builds its column options from NoteColumns.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ID_COLUMNS = ("note_id", "id", "row_id", "document_id", "doc_id", "hadm_id")
TEXT_COLUMNS = ("text", "note", "note_text", "body", "content")
SEX_COLUMNS = ("sex", "gender")
PATIENT_COLUMNS = ("patient_id", "subject_id", "person_id", "mrn")
DATE_COLUMNS = ("note_date", "date", "chartdate", "record_date")
INDEX_DATE_COLUMNS = ("index_date",)

# Spellings of a sex column that crit reads (compared trimmed and lower-cased); any other value is unknown.
MALE = ("male", "m", "man")
FEMALE = ("female", "f", "woman")


def sex_of(value: str | None) -> Literal["male", "female"] | None:
    """'M', ' Female ' -> male / female; anything else (None, 'unknown', 'x') -> None."""
    s = (value or "").strip().lower()
    return "male" if s in MALE else "female" if s in FEMALE else None


# What a note may carry besides its id and text: attribute -> (default columns, option naming it).
ATTRIBUTES: dict[str, tuple[tuple[str, ...], str]] = {
    "sex": (SEX_COLUMNS, "--sex-column"),
    "patient_id": (PATIENT_COLUMNS, "--patient-column"),
    "note_date": (DATE_COLUMNS, "--date-column"),
    "index_date": (INDEX_DATE_COLUMNS, "--index-date-column"),
}



class NoteColumns(BaseModel):
    """Which column of a table of notes holds what; None means the usual names, the first one present.

    The one definition of the column options: `crit run`'s flags, `crit.run`'s keywords and the reader
    all come from these fields (crit.engine.options builds the flags from the descriptions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id_column: str | None = Field(None, description="Column with the note id. Default: " + ", ".join(ID_COLUMNS[:3])
                                  + ", ... (first present).")
    text_column: str | None = Field(None, description="Column with the note text. Default: "
                                    + ", ".join(TEXT_COLUMNS[:3]) + ", ... (first present).")
    sex_column: str | None = Field(None, description="Column with the patient's sex. Default: "
                                   + " or ".join(SEX_COLUMNS) + " when present.")
    patient_column: str | None = Field(None, description="Column with the patient id: eligibility is then per "
                                       "patient, over all their notes. Default: " + ", ".join(PATIENT_COLUMNS)
                                       + " (first present).")
    date_column: str | None = Field(None, description="Column with the note date (YYYY-MM-DD). Default: "
                                    + ", ".join(DATE_COLUMNS) + " (first present).")
    index_date_column: str | None = Field(None, description="Column with each patient's index date, where windows "
                                          "end. Default: index_date when present, else the patient's last note date.")

    def named(self) -> dict[str, str]:
        """The columns the user named (for a run's record and messages)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}
