"""One way to fill a modality block's defaults and refuse unknown keys (issue 20):
``pipelines.toolkit.params.with_defaults``, used by every modality that has settings."""

from __future__ import annotations

import pytest

from pipelines.errors import InputError
from pipelines.modalities.metabolomics import resolve_params
from pipelines.modalities.screening.config import settings
from pipelines.modalities.transcriptomics.params import params_from_experiment
from pipelines.toolkit.params import block_schema, with_defaults


def _problem(excinfo) -> str:
    return "; ".join(str(p) for p in excinfo.value.problems)


def test_nested_settings_keep_the_other_defaults():
    cfg = settings({"qc": {"z_prime_min": 0.3}})
    schema = block_schema("screening")
    assert cfg["qc"]["z_prime_min"] == 0.3
    assert cfg["qc"]["cv_max"] == schema["properties"]["qc"]["properties"]["cv_max"]["default"]
    assert set(cfg) == set(schema["properties"])


def test_the_defaults_are_fresh_each_time():
    first = settings(None)
    first["controls"]["negative"].append("changed by a caller")
    assert "changed by a caller" not in settings(None)["controls"]["negative"]


def test_a_map_of_the_users_keys_is_kept_as_given():
    cfg = settings({"controls": {"channels": {"2": {"negative": ["DMSO"]}}}})
    # the entry replaces only what it names ({**common, **entry}): no None filled in
    assert cfg["controls"]["channels"] == {"2": {"negative": ["DMSO"]}}
    assert cfg["controls"]["positive"] == ["pos", "positive"]


@pytest.mark.parametrize(
    ("call", "where", "hint"),
    [
        (lambda: settings({"qc": {"cv_mx": 20}}), "screening.qc.cv_mx", "cv_max"),
        (
            lambda: settings({"controls": {"channels": {"1": {"negativ": ["x"]}}}}),
            "screening.controls.channels.1.negativ",
            "negative",
        ),
        (
            lambda: params_from_experiment({"transcriptomics": {"n_hvgs": 100}}),
            "transcriptomics.n_hvgs",
            "n_hvg",
        ),
        (
            lambda: resolve_params({"featurs": {"enabled": True}}, run_dir="."),
            "metabolomics.featurs",
            "features",
        ),
        (lambda: settings({"qc": 5}), "screening.qc", "indented"),
    ],
)
def test_an_unknown_or_misshapen_setting_is_refused_with_its_yaml_path(call, where, hint):
    with pytest.raises(InputError) as excinfo:
        call()
    text = _problem(excinfo)
    assert f"experiment.yaml: {where}:" in text and hint in text


def test_a_schema_that_allows_more_keeps_them():
    schema = {"type": "object", "properties": {"a": {"default": 1}}}
    assert with_defaults(schema, {"b": 2}, where="x") == {"a": 1, "b": 2}
