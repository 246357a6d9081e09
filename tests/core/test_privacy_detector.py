"""The privacy detector (pipelines.toolkit.privacy): measured recall and false positives on the
corpus of privacy_corpus.py, the cases of issue 22, operator patterns, findings without values."""

from __future__ import annotations

import subprocess
import sys

import pytest
from privacy_corpus import HARMLESS, IDENTIFIERS

from pipelines.toolkit import privacy


def test_corpus_is_large_enough():
    assert len(IDENTIFIERS) >= 200 and len(HARMLESS) >= 200


def test_recall_and_false_positives():
    m = privacy.measure()
    assert m["recall"] >= 0.99, m["missed"]
    assert m["false_positive_rate"] <= 0.01, m["false_alarms"]


def test_measure_command_prints_the_figures():
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.toolkit.privacy", "--measure"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "recall 1.000" in out or "recall 0.99" in out
    assert "false positives 0.0" in out


@pytest.mark.parametrize(
    "donor", ["yamada_taro", "YAMADA-TARO", "TaroYamada", "Taro_Yamada", "yamadataro"]
)
def test_issue_22_donor_ids_are_names(donor):
    assert privacy.NAME in privacy.detector().kinds(donor, id_like=True)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Patient Yamada Taro, 1970/01/02", privacy.NAME),
        ("Patient Yamada Taro, 1970/01/02", privacy.BIRTH),
        ("山田太郎 生年月日1970年1月2日", privacy.NAME),
        ("山田太郎 生年月日1970年1月2日", privacy.BIRTH),
        ("tel 090-1234-5678", privacy.PHONE),
        ("S45.1.2", privacy.BIRTH),
        ("昭和45年1月2日", privacy.BIRTH),
    ],
)
def test_issue_22_descriptions(text, kind):
    assert kind in privacy.detector().kinds(text)


@pytest.mark.parametrize(
    "column",
    [
        "name",
        "patient",
        "patient_id",
        "subject",
        "kanji_name",
        "氏名",
        "患者名",
        "my_number",
        "hospital_id",
        "age",
    ],
)
def test_issue_22_columns(column):
    assert privacy.detector().column_kind(column)


def test_findings_never_carry_the_value():
    found = privacy.scan_text("Patient Yamada Taro, tel 090-1234-5678", file="f", where="w")
    text = " ".join(str(f.problem()) for f in found)
    assert {f.kind for f in found} == {privacy.NAME, privacy.PHONE}
    assert "Yamada" not in text and "1234" not in text


def test_a_header_that_is_a_name_is_named_by_position():
    found = privacy.scan_columns(["well", "Yamada Taro", "patient_id"], file="map.csv")
    text = " ".join(str(f.problem()) for f in found)
    assert "column 2" in text and "Yamada" not in text
    assert "'patient_id'" in text  # a label, not a person: quoted


def test_operator_patterns_and_names(tmp_path, monkeypatch):
    pat = tmp_path / "patterns.tsv"
    pat.write_text("# our hospital's record numbers\na hospital record number\tKUH-\\d{6}\n")
    names = tmp_path / "names.tsv"
    names.write_text("family\tzyxwabc\ngiven\tqorvin\n")
    det = privacy.detector()
    assert not det.kinds("sample KUH-123456") and not det.kinds("zyxwabc_qorvin", id_like=True)
    monkeypatch.setenv(privacy.PATTERNS_ENV, str(pat))
    monkeypatch.setenv(privacy.NAMES_ENV, str(names))
    det = privacy.detector()
    assert det.kinds("sample KUH-123456") == ["a hospital record number"]
    assert det.kinds("zyxwabc_qorvin", id_like=True) == [privacy.NAME]


def test_bad_operator_pattern_names_its_line(tmp_path, monkeypatch):
    pat = tmp_path / "patterns.tsv"
    pat.write_text("ok\tabc\nbroken\t(unclosed\n")
    monkeypatch.setenv(privacy.PATTERNS_ENV, str(pat))
    with pytest.raises(ValueError, match="line 2"):
        privacy.detector()


def test_the_docs_example_runs_as_written():
    """docs/privacy.md's python block, executed as written (its comments are its output)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "privacy.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["['a personal name', 'a date of birth']", "[]", "a personal name"]
