"""Direct identifiers in text, in Japanese and English: the privacy gate's detector.

BINDS handles samples from patients.  Health data and ethnicity are special-care personal
information in Japan (APPI, 要配慮個人情報) and special-category data under GDPR Art. 9: a
dataset may hold them only pseudonymised, so any *direct* identifier that reaches a run folder
of human samples is refused before anything is processed (see :mod:`pipelines.run.privacy_gate`).

:class:`Detector` answers one question: which kinds of direct identifier a piece of text (a
sample id, a description, a raw file name, a header label, a table cell) or a column name
holds.  The kinds (:data:`KINDS`):

- ``a personal name``: a romaji/English family name next to a given name, in any order, case
  or separator (``yamada_taro``, ``YAMADA-TARO``, ``TaroYamada``, ``yamadataro``); a name after a
  context word (``Patient Yamada``, ``Mr. Smith``, ``患者 山田``); a kanji/kana family name
  followed by a given name (``山田太郎``, ``ヤマダ タロウ``) or an honorific (``山田様``,
  ``田中さん``); a field label such as ``氏名:`` or ``患者名``.  The names are the common ones
  of ``metadata/privacy/names.tsv``; institution words (``大学``, ``研究室``, ``病院`` ...) after a
  family name are a lab, not a person (``中村研究室``).
- ``a date of birth``: a date after a birth word (``DOB``, ``born``, ``生年月日``, ``生まれ``), a
  Japanese-era date (``S45.1.2``, ``昭和45年1月2日``, ``H2/3/4``), or any full date before
  2000 (``1970/01/02``, ``19700102``, ``1970年1月2日``): an acquisition that old is not
  processed by this pipeline, a birth date is.
- ``an age over 89``: ``age 92``, ``92 years old``, ``92歳``, ``92 y/o``.
- ``a phone number``: Japanese (``090-1234-5678``, ``03-1234-5678``, ``09012345678``,
  ``+81 90 1234 5678``), North-American (``(555) 123-4567``) and any number after ``tel``,
  ``phone``, ``電話``.
- ``an e-mail address``.
- ``a postal address``: ``〒113-0033``, a prefecture with a municipality (``東京都文京区``,
  ``大阪府大阪市``), an English street address (``12 Baker Street``).
- ``a My Number``: 12 digits with a valid check digit (also ``1234 5678 9018``), or any 12
  digits after ``My Number`` / ``マイナンバー`` / ``個人番号``.
- ``a medical record number``: ``MRN``, ``MR#``, ``medical record``, ``hospital id``,
  ``patient id``, ``chart no``, ``カルテ番号``, ``診察券番号``, ``患者ID`` followed by a number.
- operator-added kinds: the lines of the file named by ``BINDS_PRIVACY_PATTERNS``
  (``<kind><TAB><regular expression>``, ``#`` comments), each matched case-insensitively.

Column names are judged by :meth:`Detector.column_kind`: ``name``, ``patient``,
``patient_id``, ``subject``, ``kanji_name``, ``氏名``, ``患者名``, ``my_number``,
``hospital_id``, ``age``, ``dob``, ``address``, ``phone``, ``email`` and the like.

A :class:`Finding` carries the file, the place and the kind, **never the value**: the refusal
is printed, kept in the inbox state and in Prefect, and must not spread what it protects.

Measured on the corpus in ``tests/core/privacy_corpus.py``::

    python -m pipelines.toolkit.privacy --measure

prints the recall on the identifiers and the false positives on the harmless texts (gene and
compound names, instrument ids, sample ids, Japanese lab names, acquisition dates).
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from pipelines.errors import Problem, yaml_path
from pipelines.resources import metadata_dir

NAME = "a personal name"
BIRTH = "a date of birth"
AGE = "an age over 89"
PHONE = "a phone number"
EMAIL = "an e-mail address"
ADDRESS = "a postal address"
MY_NUMBER = "a My Number"
RECORD = "a medical record number"
COLUMN = "a column named like a direct identifier"
#: A column of exact ages (an age over 89 identifies; use age bands such as 60-69).
AGE_COLUMN = "an age (use age bands such as 60-69)"
#: The built-in kinds, in the order they are reported.
KINDS = (NAME, BIRTH, AGE, PHONE, EMAIL, ADDRESS, MY_NUMBER, RECORD)

#: A file of extra patterns: ``<kind><TAB><regex>`` a line (operators' own identifiers, e.g.
#: their hospital's record-number format).
PATTERNS_ENV = "BINDS_PRIVACY_PATTERNS"
#: A file of extra names, in the format of ``metadata/privacy/names.tsv``.
NAMES_ENV = "BINDS_PRIVACY_NAMES"

HINT = (
    "replace it with a pseudonymous code (e.g. D01, P-017); the key to the person stays with "
    "the requesting lab, never in the run folder"
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One direct identifier found: where and what kind, never the value itself."""

    file: str
    where: str
    kind: str

    def problem(self, hint: str = HINT) -> Problem:
        return Problem(
            f"holds {self.kind}: direct identifiers are not accepted for human data",
            file=self.file,
            where=self.where,
            hint=hint,
        )


# --------------------------------------------------------------------------- names
@dataclass(frozen=True, slots=True)
class Names:
    family: frozenset[str]
    given: frozenset[str]
    family_kanji: tuple[str, ...]  # longest first: 佐々木 before 佐
    given_kanji: tuple[str, ...]


def _read_names(path: Path, into: dict[str, set[str]]) -> None:
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or "\t" not in line:
            continue
        kind, name = line.split("\t", 1)
        if kind.strip() in into and name.strip():
            into[kind.strip()].add(name.strip().lower())


@cache
def _names(extra: str | None) -> Names:
    into: dict[str, set[str]] = {
        k: set() for k in ("family", "given", "family_kanji", "given_kanji")
    }
    _read_names(metadata_dir() / "privacy" / "names.tsv", into)
    if extra:
        _read_names(Path(extra), into)
    return Names(
        frozenset(into["family"]),
        frozenset(into["given"]),
        tuple(sorted(into["family_kanji"], key=len, reverse=True)),
        tuple(sorted(into["given_kanji"], key=len, reverse=True)),
    )


# Words that, after a context word ("patient ..."), are not a name: lab and clinical words,
# English function words.  A capitalised word after "patient" that is none of these is taken
# for a name (a false alarm costs a rewording, a miss publishes a person).
_NOT_A_NAME = frozenset(
    """a an the and or of with without from for to in on at by as is was were be been are
    derived sample samples cohort group groups control controls plasma serum blood cells cell
    tissue tissues tumor tumour data pool pooled qc id ids no number numbers code codes
    visit visits baseline day week month year years follow followup up pre post before after
    treated untreated treatment naive healthy case cases donor donors material organoid
    organoids xenograft xenografts line lines biopsy biopsies specimen specimens urine csf
    pbmc pbmcs rna dna library libraries batch run runs replicate rep fasting admission
    discharge consent consented information info level levels study studies characteristics
    demographics records record chart series set subset mix mixture only all each both
    positive negative male female adult adults child children infant elderly aged age
    primary secondary metastatic stage grade type types derived-organoid care room ward
    unit units file files table list lists sheet freeze""".split()
)

_CONTEXT_EN = r"(?:patient|pt|subject|donor|participant|mr|mrs|ms|miss|mx|dr|name|named|surname|firstname|lastname|fullname|full[ _-]?name)"
_CONTEXT_RE = re.compile(
    rf"(?i)(?<![A-Za-z]){_CONTEXT_EN}s?\.?(?:[\s:=#_\-]+|(?=[A-Z][a-z]))([A-Za-z][A-Za-z'\-]*)"
)
_TOKEN_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]+|[a-z]+")
_CJK = r"\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u3005"  # kana, kanji, 々
_HONORIFIC = r"(?:様|さま|さん|氏|くん|君|ちゃん|殿|先生)"
_NAME_LABEL = re.compile(
    r"(?:氏名|患者名|患者氏名|お名前|名前|フリガナ|ふりがな|姓名|被験者名|ドナー名)"
)
# after a family name these make it an institution, a lab or a place, not a person
_INSTITUTION = re.compile(
    r"^(?:研究室|研究所|研究科|研究センター|研究|研|大学|病院|医院|クリニック|診療所|学部|学科|教室|"
    r"先生の研究室|ラボ|株式会社|製薬|工業|商事|記念|財団|センター|県|市|区|町|村|駅|通り|線|"
    r"グループ|チーム|班|組|式|法|型|社|店|川|山|島|温泉|医療|薬品|化学|機器|製作所|高校|中学|小学校)"
)


def _tokens(text: str) -> list[str]:
    """Alphabetic words of ``text``, lower-cased: separators, digits and camelCase split."""
    return [t.lower() for t in _TOKEN_RE.findall(text)]


# family names that are also English words: alone, in an id or a header, they are the word
_ALSO_A_WORD = frozenset(
    "white brown green young baker black grey gray rose long short wood bell king hill cook "
    "reed ward carter turner cooper walker wright parker miller mason hunter morgan bailey "
    "james scott allen evans collins stewart".split()
)


def _split_concatenated(token: str, names: Names) -> bool:
    """``yamadataro`` / ``taroyamada``: one token made of a family and a given name."""
    for i in range(3, len(token) - 2):
        a, b = token[:i], token[i:]
        if (a in names.family and b in names.given) or (a in names.given and b in names.family):
            return True
    return False


# romaji: syllables of Japanese (Hepburn, with long vowels written out), to tell a Japanese
# family name from an English word of the same letters
_ROMAJI = re.compile(r"^(?:(?:[kgsztdnhbpmr]y?|sh|ch|ts|j|f|w|y)?[aiueo]|n)+$")
# after a family name these make it a method, a lab or a citation, not a person
_NOT_A_PERSON_AFTER = re.compile(
    r"(?i)^[\s_-]*(?:lab|labs|laboratory|group|coupling|reaction|method|buffer|medium|kit|"
    r"protocol|reagent|et\s+al|'s\s+(?:method|reagent|buffer|medium|lab)|研|研究室|ラボ)"
)


def _initial_and_family(text: str, names: Names) -> bool:
    """``T. Yamada``, ``Yamada T.``, ``T.Yamada``: an initial beside a family name."""
    for m in re.finditer(r"(?<![A-Za-z])([A-Z])\.\s?([A-Z][a-z]+|[A-Z]{3,})(?![A-Za-z])", text):
        if m.group(2).lower() in names.family:
            return True
    for m in re.finditer(r"(?<![A-Za-z])([A-Z][a-z]+|[A-Z]{3,}),?\s([A-Z])\.(?!\w)", text):
        if m.group(1).lower() in names.family:
            return True
    return False


def _lone_japanese_family(text: str, names: Names) -> bool:
    """A capitalised Japanese family name of 5 letters or more in free text (``sample from
    Yamada``), unless a lab, a method or a citation follows (``Suzuki coupling``)."""
    for m in re.finditer(r"(?<![A-Za-z])([A-Z][a-z]{4,}|[A-Z]{5,})(?![A-Za-z])", text):
        word = m.group(1).lower()
        if (
            word in names.family
            and _ROMAJI.match(word)
            and not _NOT_A_PERSON_AFTER.match(text[m.end() :])
        ):
            return True
    return False


def _romaji_name(text: str, names: Names, *, id_like: bool) -> bool:
    toks = _tokens(text)
    for a, b in itertools.pairwise(toks):
        if (a in names.family and b in names.given) or (a in names.given and b in names.family):
            return True
    for t in toks:
        if len(t) >= 7 and _split_concatenated(t, names):
            return True
        # an id or a file name made of a family name ("yamada_plasma.mzML"): a person's name
        if id_like and len(t) >= 5 and t in names.family and t not in _ALSO_A_WORD:
            return True
    if _initial_and_family(text, names) or _lone_japanese_family(text, names):
        return True
    for m in _CONTEXT_RE.finditer(text):
        word = m.group(1)
        low = word.lower().strip("'-")
        if low in names.family or low in names.given:
            return True
        # "Patient Kowalski": a capitalised word; an all-capitals one is a gene or an acronym
        # ("donor HLA typing") unless it is a listed name
        capitalised = word[:1].isupper() and not word.isupper() and len(low) >= 3
        if capitalised and low not in _NOT_A_NAME and not re.search(r"\d", word):
            return True
    return False


# 様 in 同様 / 様式 / 多様 ... is no honorific; 氏名 is a label (caught as one)
_NOT_HONORIFIC = re.compile(
    r"(?:皆|客|神|王|同|多|模|仕|異|一|各|態|有|文)(?:様|さま|さん)|様(?:式|子|々|相|性)|氏名|(?:研究室|大学|病院|センター|研究所|ラボ)(?:様|さん|殿)"
)


def _honorific_of_a_person(text: str, m: re.Match[str]) -> bool:
    around = text[max(0, m.start() - 1) : m.end() + 1]
    return not _NOT_HONORIFIC.search(around) and not _NOT_HONORIFIC.search(m.group(0))


_HAS_CJK = re.compile(rf"[{_CJK}]")


def _kanji_name(text: str, names: Names, *, id_like: bool) -> bool:
    if not _HAS_CJK.search(text):
        return False
    if _NAME_LABEL.search(text):
        return True
    for h in re.finditer(rf"([{_CJK}]{{1,4}})\s?{_HONORIFIC}", text):
        if _honorific_of_a_person(text, h):
            return True
    if re.search(r"(?:患者|被験者|ドナー)\s?[:：]?\s?[\u3400-\u9fff\u30a0-\u30ff]{2,}", text):
        label = re.search(r"(?:患者|被験者|ドナー)\s?[:：]?\s?(.+)", text)
        tail = label.group(1) if label else ""
        if any(tail.startswith(f) for f in names.family_kanji):
            return True
    for fam in names.family_kanji:
        start = 0
        while (i := text.find(fam, start)) >= 0:
            start = i + 1
            after = text[i + len(fam) :]
            rest = after.lstrip(" \u3000・")
            if _INSTITUTION.match(rest):
                continue
            if any(rest.startswith(g) for g in names.given_kanji):
                return True
            m = re.match(rf"[{_CJK}]{{1,3}}", rest)
            before = text[i - 1] if i > 0 else ""
            spaced = len(rest) < len(after)  # "林 京子": the space marks a name
            # one-kanji family names (林, 森, 原) start ordinary words (原子, 林檎): there only a
            # listed given name, a space or an honorific makes a name
            if len(fam) == 1 and not spaced:
                continue
            if m and not re.match(rf"[{_CJK}]", before):
                # a family name then one to three kanji/kana: a given name, unless the run goes on
                # (a longer compound word) or is an institution word
                follow = rest[m.end() : m.end() + 1]
                if not re.match(rf"[{_CJK}]", follow):
                    return True
            if id_like and not m and len(fam) >= 2 and not re.match(rf"[{_CJK}]", before):
                return True
    return False


# --------------------------------------------------------------------------- dates, numbers
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    r"(?:\d{4}[-/.年]\s?\d{1,2}[-/.月]\s?\d{1,2}日?"
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
    r"|\d{8}"
    rf"|\d{{1,2}}\s?{_MONTHS}\s?,?\s?\d{{2,4}}"
    rf"|{_MONTHS}\s?\d{{1,2}},?\s?\d{{2,4}})"
)
_BIRTH_WORD = (
    r"(?:d\.?o\.?b\.?|date\s*of\s*birth|birth\s*date|birthday|born|b\.|生年月日|誕生日|生まれ|出生)"
)
_BIRTH_CONTEXT = re.compile(
    rf"(?i){_BIRTH_WORD}[\s:：=_\-]*(?:on\s*)?(?:{_DATE}|[MTSHR]\d|明治|大正|昭和|平成|令和)"
)
_ERA = re.compile(
    r"(?i)(?<![A-Za-z0-9])[MTSH]\s?\d{1,2}[./年-]\d{1,2}[./月-]\d{1,2}(?!\d)"
    r"|(?:明治|大正|昭和|平成)\s?(?:\d{1,2}|元)\s?年"
)
_OLD_DATE = re.compile(
    r"(?<!\d)(?:19\d{2})(?:[-/.年]\s?(?:0?[1-9]|1[0-2])[-/.月]\s?(?:0?[1-9]|[12]\d|3[01])日?"
    r"|(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))(?!\d)"
    r"|(?<!\d)(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.]19\d{2}(?!\d)"
    rf"|(?i:(?<![a-z])(?:\d{{1,2}}\s?{_MONTHS}\s?,?\s?|{_MONTHS}\s?\d{{1,2}},?\s?)19\d{{2}}(?!\d))"
)
_AGE = re.compile(
    r"(?i)(?:\bage[ds]?\b[\s:=]*|年齢[\s:：]*)(9\d|1[0-4]\d)(?!\d)"
    r"|(?<!\d)(9\d|1[0-4]\d)\s?(?:years?[\s-]*old|yrs?[\s-]*old|y/?o\b|-year-old|歳|才)"
)
_PHONE = re.compile(
    r"(?<![\d.-])(?:"
    r"\+\d{1,3}[\s-]?\(?\d{1,4}\)?[\s-]?\d{2,4}[\s-]?\d{3,4}"  # +81 90 1234 5678, +1 555 123 4567
    r"|0\d{1,4}-\d{1,4}-\d{3,4}"  # 090-1234-5678, 03-1234-5678, 0120-123-456
    r"|\(0\d{1,4}\)\s?\d{1,4}-\d{4}"  # (03) 1234-5678
    r"|0[5789]0[ .]?\d{4}[ .]?\d{4}"  # 09012345678, 090 1234 5678, 090.1234.5678
    r"|\(\d{3}\)\s?\d{3}-\d{4}"  # (555) 123-4567
    r")(?![\d-])"
)
_PHONE_CONTEXT = re.compile(
    r"(?i)(?:\btel\b|\bphone\b|\bmobile\b|\bcell\b|\bfax\b|電話|携帯|連絡先|ＴＥＬ)[\s.:：#=_\-]*\+?\d[\d\s()\-]{7,}\d"
)
_EMAIL = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|[\w.+-]+\s?(?:\(at\)|\[at\]|＠)\s?[\w-]+\.[\w.-]+"
)
_PREFECTURE = (
    r"(?:北海道|東京都|大阪府|京都府|(?:青森|岩手|宮城|秋田|山形|福島|茨城|栃木|群馬|埼玉|千葉|神奈川|新潟|富山|石川|福井|山梨|長野|"
    r"岐阜|静岡|愛知|三重|滋賀|兵庫|奈良|和歌山|鳥取|島根|岡山|広島|山口|徳島|香川|愛媛|高知|福岡|佐賀|長崎|熊本|大分|宮崎|鹿児島|沖縄)県)"
)
_ADDRESS = re.compile(
    r"〒\s?\d{3}-?\d{4}"
    rf"|{_PREFECTURE}\s?[\u3040-\u30ff\u3400-\u9fff]{{1,6}}?[市区町村郡]"
    r"|\d{1,4}[-\s]?(?:丁目|番地)"
    r"|(?i:(?:postal|zip|post)\s*(?:code)?[\s:#]*\d{3}-?\d{4})"
    r"|\b\d{1,5}\s+(?:[A-Z][a-z]+\s){1,3}(?:Street|St\.|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?"
    r"|Lane|Ln\.?|Drive|Dr\.?|Court|Ct\.?|Way|Place|Pl\.?|Terrace|Crescent)(?![a-z])"
)
_TWELVE = re.compile(r"(?<![\d.])(\d{4})[\s-]?(\d{4})[\s-]?(\d{4})(?![\d.])")
_MY_NUMBER_CONTEXT = re.compile(r"(?i)(?:my\s*_?number|マイナンバー|個人番号)[\s:：=#_\-]*\d")
_RECORD = re.compile(
    r"(?i)(?:\bmrn|\bmr\s?#|medical[\s_-]*record|hospital[\s_-]*(?:id|no|number|#)|patient[\s_-]*(?:id|no|number|#)"
    r"|chart[\s_-]*(?:no|number|#)|\bcase[\s_-]*no|カルテ(?:番号|No|ＮＯ|ID)?|診察券(?:番号)?|患者(?:ID|ＩＤ|番号)|病院ID|病歴番号)"
    r"[\s.:：=#_\-]*[A-Z]{0,3}[\s-]?\d{4,}"
)


def _my_number_check(digits: str) -> bool:
    """The check digit of a My Number (個人番号): 11 digits weighted 2-7, 2-6 from the right."""
    body, check = digits[:11], int(digits[11])
    total = sum(
        int(d) * (n + 1 if n <= 6 else n - 5) for n, d in enumerate(reversed(body), start=1)
    )
    r = total % 11
    return check == (0 if r <= 1 else 11 - r)


def _looks_like_timestamp(digits: str) -> bool:
    """``YYYYMMDDhhmm``: an instrument's acquisition time, not a My Number."""
    y, mo, d, h, mi = (
        int(digits[:4]),
        int(digits[4:6]),
        int(digits[6:8]),
        int(digits[8:10]),
        int(digits[10:]),
    )
    return 1990 <= y <= 2099 and 1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59


# --------------------------------------------------------------------------- columns
_COLUMN_WORDS = {
    NAME: {
        "name",
        "names",
        "patient",
        "patient_name",
        "patient_names",
        "subject",
        "subject_name",
        "kanji_name",
        "kana_name",
        "romaji_name",
        "first_name",
        "firstname",
        "last_name",
        "lastname",
        "surname",
        "given_name",
        "family_name",
        "full_name",
        "fullname",
        "maiden_name",
        "donor_name",
        "participant_name",
        "person_name",
        "forename",
        "name_of_patient",
        "furigana",
        "氏名",
        "患者名",
        "患者氏名",
        "名前",
        "お名前",
        "姓",
        "名",
        "フリガナ",
        "ふりがな",
        "被験者名",
        "カナ氏名",
        "漢字氏名",
    },
    BIRTH: {
        "dob",
        "birth",
        "birthday",
        "birthdate",
        "date_of_birth",
        "birth_date",
        "生年月日",
        "誕生日",
    },
    AGE_COLUMN: {"age", "age_years", "age_at_sampling", "年齢"},
    PHONE: {
        "phone",
        "telephone",
        "tel",
        "mobile",
        "cell_phone",
        "fax",
        "phone_number",
        "電話",
        "電話番号",
        "携帯",
        "携帯番号",
    },
    EMAIL: {"email", "e_mail", "mail", "email_address", "メール", "メールアドレス"},
    ADDRESS: {
        "address",
        "street",
        "zip",
        "zip_code",
        "zipcode",
        "postcode",
        "postal_code",
        "住所",
        "郵便番号",
        "home_address",
    },
    MY_NUMBER: {
        "my_number",
        "mynumber",
        "individual_number",
        "マイナンバー",
        "個人番号",
        "ssn",
        "social_security_number",
        "national_id",
        "nhs_number",
        "passport",
        "passport_number",
        "insurance_number",
        "health_insurance_number",
        "保険証番号",
    },
    RECORD: {
        "patient_id",
        "patientid",
        "patient_no",
        "patient_number",
        "hospital_id",
        "hospital_no",
        "hospital_number",
        "mrn",
        "medical_record_number",
        "medical_record",
        "chart_no",
        "chart_number",
        "karte",
        "karte_no",
        "subject_id",
        "カルテ番号",
        "患者id",
        "患者番号",
        "診察券番号",
        "病院id",
    },
}


def _norm_column(column: str) -> str:
    text = unicodedata.normalize("NFKC", str(column)).strip()
    # camelCase -> snake, then any separator -> '_'
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", text).lower()
    return re.sub(r"[^0-9a-z\u3040-\u30ff\u3400-\u9fff]+", "_", text).strip("_")


# --------------------------------------------------------------------------- the detector
@dataclass(frozen=True, eq=False)  # hashed by identity: results are cached per detector
class Detector:
    """Which kinds of direct identifier a text or a column name holds.

    ``extra_patterns``: (kind, compiled regex) an operator added (see :data:`PATTERNS_ENV`).
    """

    names: Names
    extra_patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()

    def kinds(self, text: object, *, id_like: bool = False, names: bool = True) -> list[str]:
        """The kinds of identifier in ``text`` (empty: none found), in :data:`KINDS` order.

        ``id_like``: the text is an id or a file name (a lone family name there is a name).
        ``names=False``: personal names are not looked for (fields that hold staff names).
        """
        if text is None or isinstance(text, bool | float):
            return []
        if len(text := str(text)) <= 3 and text.isascii() and text.isalnum():
            return []  # a well, a plate row, a flag: too short to identify anyone
        return list(_kinds_cached(self, text, id_like, names))

    def _kinds(self, text: str, id_like: bool, names: bool) -> tuple[str, ...]:
        text = unicodedata.normalize("NFKC", text)
        if not text.strip():
            return ()
        found: list[str] = []
        if names and (
            _romaji_name(text, self.names, id_like=id_like)
            or _kanji_name(text, self.names, id_like=id_like)
        ):
            found.append(NAME)
        if _BIRTH_CONTEXT.search(text) or _ERA.search(text) or _OLD_DATE.search(text):
            found.append(BIRTH)
        if _AGE.search(text):
            found.append(AGE)
        if _PHONE.search(text) or _PHONE_CONTEXT.search(text):
            found.append(PHONE)
        if _EMAIL.search(text):
            found.append(EMAIL)
        if _ADDRESS.search(text):
            found.append(ADDRESS)
        if _MY_NUMBER_CONTEXT.search(text) or any(
            _my_number_check(d) and not _looks_like_timestamp(d)
            for d in ("".join(m.groups()) for m in _TWELVE.finditer(text))
        ):
            found.append(MY_NUMBER)
        if _RECORD.search(text):
            found.append(RECORD)
        for kind, rx in self.extra_patterns:
            if kind not in found and rx.search(text):
                found.append(kind)
        return tuple(found)

    def column_kind(self, column: object) -> str | None:
        """The kind of identifier a column name announces (``patient_id``, ``氏名``), else None."""
        c = _norm_column(str(column))
        if not c:
            return None
        for kind, words in _COLUMN_WORDS.items():
            if c in words:
                return kind
        # patient_name_kanji, donor_birth_date, home_phone, contact_email: the telling part
        parts = c.split("_")
        if "name" in parts and not {
            "gene",
            "feature",
            "compound",
            "sample",
            "file",
            "target",
            "protein",
            "plate",
            "well",
            "instrument",
            "run",
            "cell",
            "antibody",
            "metabolite",
            "drug",
            "strain",
            "project",
            "lab",
            "dataset",
        } & set(parts):
            return NAME
        if "birth" in c or "dob" in parts:
            return BIRTH
        if {"phone", "telephone", "tel", "mobile"} & set(parts):
            return PHONE
        if "email" in c or "e_mail" in c:
            return EMAIL
        if "address" in parts or "street" in parts:
            return ADDRESS
        if {"mrn", "karte"} & set(parts) or c.startswith(("patient_", "hospital_")):
            return RECORD
        if "氏名" in c or "患者" in c or "住所" in c or "電話" in c:
            return NAME if ("氏名" in c or "患者" in c) else (ADDRESS if "住所" in c else PHONE)
        return None


@lru_cache(maxsize=65536)  # tables repeat their cells (plate rows, labels, units)
def _kinds_cached(det: Detector, text: str, id_like: bool, names: bool) -> tuple[str, ...]:
    return det._kinds(text, id_like, names)


def _extra_patterns(path: str | None) -> tuple[tuple[str, re.Pattern[str]], ...]:
    if not path:
        return ()
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        kind, sep, rx = line.partition("\t")
        if not sep:
            kind, rx = "an identifier the operator listed", line
        try:
            out.append((kind.strip(), re.compile(rx.strip(), re.IGNORECASE)))
        except re.error as err:
            raise ValueError(f"{path}: line {n}: not a regular expression ({err})") from None
    return tuple(out)


@cache
def _detector(patterns: str | None, names: str | None) -> Detector:
    return Detector(_names(names), _extra_patterns(patterns))


def detector() -> Detector:
    """The detector with the bundled names and the operator's additions (environment)."""
    return _detector(os.environ.get(PATTERNS_ENV) or None, os.environ.get(NAMES_ENV) or None)


def scan_text(
    text: object, *, file: str, where: str, id_like: bool = False, names: bool = True
) -> list[Finding]:
    """One :class:`Finding` per kind of identifier in ``text``."""
    return [
        Finding(file, where, kind) for kind in detector().kinds(text, id_like=id_like, names=names)
    ]


#: Columns that show a table lists things (compounds, genes, targets), not people.
_THING_COLUMNS = frozenset(
    "mz m_z formula adduct rt rt_s rt_min smiles inchi inchikey gene_id feature_id ensembl_id "
    "compound cas mass exact_mass monoisotopic_mass target gene_symbol uniprot chebi".split()
)


def scan_columns(columns: Iterable[object], *, file: str, what: str = "column") -> list[Finding]:
    """Findings for column names that announce a direct identifier (``patient_id``, ``氏名``).

    Such a name is a label, not a person, and is quoted; a header that is itself an identifier
    (a column named after a patient) is named by its position only.
    """
    out = []
    det = detector()
    columns = list(columns)
    # "name" next to m/z, formula, gene ids ...: the name of a compound, a gene, a target
    of_things = bool({_norm_column(str(c)) for c in columns} & _THING_COLUMNS)
    for n, col in enumerate(columns, start=1):
        label = _norm_column(str(col))
        if of_things and label in ("name", "names"):
            continue
        if any(label in words for words in _COLUMN_WORDS.values()):
            out.append(Finding(file, f"{what} {str(col)!r}", f"{COLUMN} ({det.column_kind(col)})"))
        elif in_name := det.kinds(col, id_like=not re.search(r"\s", str(col).strip())):
            out += [Finding(file, f"{what} {n} (its header)", kind) for kind in in_name]
        elif kind := det.column_kind(col):
            out.append(Finding(file, f"{what} {str(col)!r}", f"{COLUMN} ({kind})"))
    return out


# --------------------------------------------------------------------------- measuring
def measure() -> dict[str, float]:
    """Recall and false-positive rate on the corpus of ``tests/core/privacy_corpus.py``."""
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "tests" / "core"))
    try:
        privacy_corpus = importlib.import_module("privacy_corpus")
    finally:
        sys.path.pop(0)
    det = detector()
    hits = [bool(_judge(det, item)) for item in privacy_corpus.IDENTIFIERS]
    false = [bool(_judge(det, item)) for item in privacy_corpus.HARMLESS]
    return {
        "identifiers": len(hits),
        "harmless": len(false),
        "recall": sum(hits) / len(hits),
        "false_positive_rate": sum(false) / len(false),
        "missed": [
            item for item, ok in zip(privacy_corpus.IDENTIFIERS, hits, strict=True) if not ok
        ],  # type: ignore[dict-item]
        "false_alarms": [
            item for item, bad in zip(privacy_corpus.HARMLESS, false, strict=True) if bad
        ],  # type: ignore[dict-item]
    }


def _judge(det: Detector, item: tuple[str, str]) -> list[str]:
    """``(how, text)`` of the corpus: ``column`` for a column name, ``id`` for an id or file
    name, ``text`` for free text."""
    how, text = item
    if how == "column":
        kind = det.column_kind(text)
        return [kind] if kind else []
    return det.kinds(text, id_like=how == "id")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["--measure"]:
        print("usage: python -m pipelines.toolkit.privacy --measure [--verbose]")
        return 2
    m = measure()
    print(
        f"identifiers {m['identifiers']}, recall {m['recall']:.3f}; "
        f"harmless {m['harmless']}, false positives {m['false_positive_rate']:.3f}"
    )
    if "--verbose" in args:  # the corpus is synthetic: its examples may be printed
        for item in m["missed"]:  # type: ignore[attr-defined]
            print("missed:", item)
        for item in m["false_alarms"]:  # type: ignore[attr-defined]
            print("false alarm:", item)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ------------------------------------------------------------------ experiment.yaml's fields
#: fields that name staff (a name there is refused only next to "patient", "様" ...)
STAFF_FIELDS = ("operator", "requester")
# fields whose text is an id (a lone family name there is a name)
_ID_FIELDS = {"id", "donor_id", "dataset_id", "request_id", "files"}
# coded fields: ontology ids, enumerations, numbers: nothing a person writes
_CODED = {
    "organism",
    "tissue",
    "cell_type",
    "compound",
    "sex",
    "disease",
    "development_stage",
    "self_reported_ethnicity",
    "modality",
    "schema_version",
    "license",
    "level",
    "acquired",
    "embargo_until",
    "orcid",
    "personal_data",
}
_PATIENT_CONTEXT = re.compile(r"(?i)patient|donor|subject|participant|患者|被験者|ドナー|様|さん")


def experiment_findings(
    experiment: dict[str, Any],
    *,
    file: str = "experiment.yaml",
    where: Callable[[list[Any]], str] = yaml_path,
) -> Iterator[Finding]:
    """Direct identifiers in the text fields of an experiment description, each placed by
    ``where(parts)`` (its YAML path by default)."""
    det = detector()
    for parts, value in _walk(experiment):
        keys = [p for p in parts if isinstance(p, str)]
        if not keys or keys[-1] in _CODED or not isinstance(value, str | int):
            continue
        staff = keys[0] in STAFF_FIELDS
        id_like = bool(_ID_FIELDS & set(keys[-1:])) or keys[-1].endswith(("file", "sheet", "path"))
        # staff fields name staff: a name there is refused only after "patient", "様" ...
        names = not staff or bool(_PATIENT_CONTEXT.search(str(value)))
        for kind in det.kinds(value, id_like=id_like, names=names):
            yield Finding(file, where(parts), kind)


def _walk(obj: Any, parts: list[Any] | None = None) -> Iterator[tuple[list[Any], Any]]:
    parts = parts or []
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, [*parts, str(k)])
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, [*parts, i])
    else:
        yield parts, obj
