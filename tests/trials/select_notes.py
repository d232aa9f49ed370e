"""Draw each trial's 40 MTSamples notes for the many-trials benchmark (run once; kept for the record).

    python tests/trials/select_notes.py ../shared/data/mtsamples.jsonl

For each trial, in the order below (smallest pool first), a seeded draw of 28 notes that mention one
of the trial's topic words and 12 that do not, from the trial's specialties, 600-4,500 characters.
No note is drawn twice, none whose text another drawn note repeats (MTSamples files many reports
under two specialties), and none that any other data file of this repository uses (tests/gold,
tests/gold/fresh, tests/gold/overrides, examples, fixtures). The topic words are the selector's
own, written before any trial was labelled; they are not the trial files' terms.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CONSULT = "Consult - History and Phy."
TRIALS: dict[str, tuple[list[str], list[str]]] = {
    "depression": (["Psychiatry / Psychology", CONSULT, "General Medicine", "SOAP / Chart / Progress Notes",
                    "Discharge Summary", "Office Notes"],
                   ["depress", "suicid", "bipolar", "antidepress", "psychiatr", "anxiety"]),
    "pregnancy": (["Obstetrics / Gynecology", CONSULT, "Emergency Room Reports", "Discharge Summary"],
                  ["pregnan", "gestation", "gravida", "preeclampsia", "prenatal", "intrauterine"]),
    "oncology": (["Hematology - Oncology", CONSULT, "Discharge Summary", "General Medicine"],
                 ["cancer", "carcinoma", "metasta", "chemotherapy", "lymphoma", "tumor", "malignan"]),
    "stroke": (["Neurology", "Emergency Room Reports", CONSULT, "Discharge Summary", "General Medicine"],
               ["stroke", "cva", "nihss", "hemiparesis", "infarct", "tia", "weakness"]),
    "ckd": (["Nephrology", CONSULT, "General Medicine", "Discharge Summary", "SOAP / Chart / Progress Notes"],
            ["renal", "kidney", "creatinine", "dialysis", "gfr", "nephro"]),
    "diabetes": (["Endocrinology", CONSULT, "General Medicine", "SOAP / Chart / Progress Notes",
                  "Discharge Summary", "Office Notes"],
                 ["diabet", "a1c", "insulin", "metformin", "glucose", "hyperglycemi"]),
    "copd": (["Cardiovascular / Pulmonary", CONSULT, "General Medicine", "Emergency Room Reports",
              "SOAP / Chart / Progress Notes"],
             ["copd", "emphysema", "fev1", "asthma", "inhaler", "oxygen", "smok", "wheez"]),
    "pneumonia": (["Cardiovascular / Pulmonary", "Emergency Room Reports", "Discharge Summary", CONSULT,
                   "General Medicine", "Pediatrics - Neonatal"],
                  ["pneumonia", "sepsis", "septic", "fever", "infiltrate", "antibiotic", "febrile"]),
}
WITH_TOPIC, WITHOUT_TOPIC = 28, 12


def used_elsewhere() -> set[str]:
    ids: set[str] = set()
    for path in ROOT.rglob("*"):
        if path.suffix in {".jsonl", ".json", ".csv"} and HERE not in path.parents and ".git" not in path.parts:
            ids.update(re.findall(r"mts-\d+", path.read_text(errors="replace")))
    return ids


def main(source: str) -> None:
    notes = [json.loads(line) for line in Path(source).open()]
    excluded_ids = used_elsewhere()
    taken_texts = {n["text"].strip() for n in notes if n["note_id"] in excluded_ids}
    for trial, (specialties, topic) in TRIALS.items():
        rng = random.Random(f"crit-trials-{trial}")
        pool = [n for n in notes if n["specialty"] in specialties and 600 <= len(n["text"]) <= 4500
                and n["text"].strip() not in taken_texts]
        on_topic = [n for n in pool if any(w in n["text"].lower() for w in topic)]
        off_topic = [n for n in pool if n not in on_topic]
        chosen: list[dict] = []
        for group, k in ((on_topic, WITH_TOPIC), (off_topic, WITHOUT_TOPIC)):
            rng.shuffle(group)
            for n in group:
                if len([c for c in chosen if c in group]) == k:
                    break
                if n["text"].strip() not in taken_texts:
                    chosen.append(n)
                    taken_texts.add(n["text"].strip())
        chosen.sort(key=lambda n: int(n["note_id"].split("-")[1]))
        out = HERE / trial / "notes.jsonl"
        out.write_text("".join(json.dumps({k: n[k] for k in ("note_id", "specialty", "title", "text")}) + "\n"
                               for n in chosen))
        print(f"{trial}: {len(chosen)} notes ({len(on_topic)} on topic, {len(off_topic)} off in the pool)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "data" / "mtsamples.jsonl"))
