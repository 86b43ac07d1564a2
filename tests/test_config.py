"""mlpack.toml: the example parses; every kind of mistake is exit 2 with one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpack.build import preflight
from mlpack.config import load_config, parse_config
from mlpack.errors import ConfigError
from tests.helpers.cli import REPO, artifacts_in, assert_clean_error
from tests.helpers.projects import CHURN_CONFIG


def test_bundled_example_parses_to_typed_config() -> None:
    config = load_config(REPO / "examples" / "wine")
    assert config.model.name == "wine-cultivar"
    assert config.model.import_name == "wine_cultivar"
    assert config.source.embedded is True
    assert config.features.numeric[1] == "acidity.malic_acid"
    assert config.estimator.class_path == "sklearn.ensemble.RandomForestClassifier"
    assert config.evaluation.gates == {"accuracy": 0.85}
    assert isinstance(config.export.parity_tolerance, float)
    assert config.registry.collection == "mlpack_models"


def test_a_path_to_the_toml_file_works_too() -> None:
    assert load_config(REPO / "examples" / "wine" / "mlpack.toml").model.name == "wine-cultivar"


def test_defaults_fill_optional_sections() -> None:
    config = parse_config(
        {
            "model": {"name": "m", "task": "regression"},
            "source": {"database": "d", "collection": "c"},
            "features": {"numeric": ["x"], "target": "y"},
            "estimator": {"class": "sklearn.linear_model.Ridge"},
        }
    )
    assert config.model.version == "auto"
    assert config.source.uri_env == "MONGODB_URI"
    assert config.evaluation.test_size == 0.2
    assert config.export.target_opset == 17
    assert config.image.port == 8080


def write(tmp_path: Path, text: str) -> Path:
    project = tmp_path / "p"
    project.mkdir(exist_ok=True)
    (project / "mlpack.toml").write_text(text, encoding="utf-8")
    return project


BAD_CONFIGS = [
    # (replace this, with that, message must contain)
    ("[estimator]", "[estimater]", "unknown key [estimater] (did you mean 'estimator'?)"),
    (
        'task = "classification"',
        'task = "classification"\nverison = "1"',
        "unknown key [model].verison (did you mean 'version'?)",
    ),
    (
        'collection = "customers"',
        'collection = "customers"\nlimit = "ten"',
        "[source].limit must be an integer, got 'ten'",
    ),
    (
        'collection = "customers"',
        'collection = "customers"\nembedded = "yes"',
        "[source].embedded must be true or false",
    ),
    ('task = "classification"', 'task = "clustering"', "[model].task must be one of 'classification', 'regression'"),
    ('version = "1.0.0"', 'version = "one"', "[model].version 'one' is not a PEP 440 version"),
    ('name = "churn-model"', 'name = "churn model!"', "[model].name 'churn model!' is not a valid package name"),
    # A wheel named so installs, but `import 9lives` is a syntax error and `import json` finds the stdlib's.
    ('name = "churn-model"', 'name = "9lives"', "[model].name '9lives' gives the import name '9lives', which Python"),
    ('name = "churn-model"', 'name = "class"', "`import class` is a syntax error"),
    ('name = "churn-model"', 'name = "json"', "[model].name 'json' gives the import name 'json', which is taken"),
    ('database = "db"\n', "", "missing required key [source].database"),
    ('target = "label"', "target = 3", "[features].target must be a string, got 3"),
    ('numeric = ["tenure_months"', 'numeric = [1, "tenure_months"', "[features].numeric[0] must be a string, got 1"),
    ("test_size = 0.25", "test_size = 1.5", "[evaluation].test_size must be between 0 and 1"),
    ("gates = { accuracy = 0.6 }", 'gates = { accuracy = "high" }', "[evaluation].gates.accuracy must be a number"),
    (
        'categorical = ["contract", "billing.method"]',
        'categorical = ["contract", "tenure_months"]',
        "'tenure_months' is listed twice",
    ),
    ("[evaluation]", "[evaluation]\n[evaluation.extra]", "unknown key [evaluation].extra"),
    ("[evaluation]", "[serve]\nbatch_max_records = 0\n[evaluation]", "[serve].batch_max_records must be a positive"),
    ("[evaluation]", "[serve]\nbatch_wait_us = -5\n[evaluation]", "[serve].batch_wait_us must be 0 or a positive"),
    ("[evaluation]", '[serve]\nbatch_wait_us = "fast"\n[evaluation]', "[serve].batch_wait_us must be an integer"),
    ('task = "classification"', 'task = "classification', "not valid TOML"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_CONFIGS, ids=[m[:40] for _, _, m in BAD_CONFIGS])
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, run, old: str, new: str, message: str) -> None:
    text = CHURN_CONFIG.format(database="db")
    assert old in text
    project = tmp_path / "p"
    project.mkdir()
    (project / "mlpack.toml").write_text(text.replace(old, new, 1), encoding="utf-8")
    out = tmp_path / "out"
    result = run("build", project, "--out", out)
    assert_clean_error(result, 2, message)
    assert result.err.count("\n") == 1, "one line, no report"
    assert artifacts_in(out) == []


def test_missing_project_and_missing_file_are_usage_errors(tmp_path: Path, run) -> None:
    assert_clean_error(run("build", tmp_path / "nowhere"), 2, "project folder not found")
    assert_clean_error(run("build", tmp_path), 2, "no mlpack.toml in")
    assert_clean_error(run("build", tmp_path / "x.toml"), 2, "configuration file not found")


def test_config_errors_are_exceptions_for_library_users() -> None:
    with pytest.raises(ConfigError, match=r"unknown key \[sorce\]"):
        parse_config({"sorce": {}})


def test_bad_version_flag_is_a_usage_error(tmp_path: Path, run) -> None:
    project = write(tmp_path, CHURN_CONFIG.format(database="db"))
    assert_clean_error(run("build", project, "--version", "v-one"), 2, "--version 'v-one' is not a PEP 440 version")


def test_unknown_command_line_option_exits_2(run) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("build", "--no-such-flag")
    assert exit_info.value.code == 2


def test_the_readme_config_reference_is_a_valid_config() -> None:
    import re
    import tomllib

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## `mlpack.toml`\n\n```toml\n(.*?)```", readme, re.S)
    assert block is not None
    config = parse_config(tomllib.loads(block.group(1)))
    assert config.features.categorical == ["contract", "billing.method"]
    assert config.image_configured


_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)
_values = st.recursive(
    _scalars.filter(lambda v: v is not None),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_known = {
    "model": ["name", "version", "task", "description"],
    "source": ["database", "collection", "uri_env", "filter", "limit", "seed", "embedded"],
    "features": ["target", "numeric", "categorical"],
    "estimator": ["class", "params"],
    "evaluation": ["test_size", "seed", "metrics", "gates"],
    "export": ["target_opset", "parity_tolerance"],
    "image": ["base", "port", "tag", "python", "arch"],
    "serve": ["max_body_bytes", "inference_log", "batch_max_records", "batch_wait_us"],
}
_sections = st.fixed_dictionaries(
    {},
    optional={
        name: st.dictionaries(st.sampled_from([*keys, "extra"]), _values, max_size=len(keys)) | _values
        for name, keys in _known.items()
    },
)


@settings(max_examples=300, deadline=None)
@given(raw=_sections)
def test_any_config_is_accepted_or_a_config_error(raw: dict) -> None:
    """Whatever a user writes, the answer is a Config or a ConfigError naming something: no traceback."""
    try:
        parse_config(raw)
    except ConfigError as error:
        assert error.message and error.exit_code == 2


@settings(max_examples=300, deadline=None)
@given(section=st.sampled_from(sorted(_known)), key=st.data(), value=_values)
def test_any_single_bad_value_in_a_valid_config_is_named(section: str, key: st.DataObject, value: object) -> None:
    import tomllib

    raw = tomllib.loads(CHURN_CONFIG.format(database="db"))
    name = key.draw(st.sampled_from(_known[section]))
    raw.setdefault(section, {})[name] = value
    try:
        preflight(parse_config(raw))  # the checks a build makes before touching the database
    except ConfigError as error:
        assert f"[{section}]" in error.message or "not valid" in error.message or name in error.message
