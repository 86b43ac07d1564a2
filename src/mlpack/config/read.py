"""Reading `mlpack.toml`: keys and types checked against the sections' type hints, then the rules between keys."""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from mlpack import filters, names
from mlpack.config import rules
from mlpack.config.image import check_image, image_base
from mlpack.config.sections import CONFIG_FILE, Config, PreprocessingSection
from mlpack.errors import ConfigError
from mlpack.times import Window

MAX_CHAR_NGRAM = 8  # [preprocessing].text_chars: longer n-grams are words in all but name


def find_config_file(project: str | Path = ".") -> Path:
    """A project folder holds `mlpack.toml`; a path to a `.toml` file names it directly."""
    path = Path(project)
    if path.suffix == ".toml":
        if not path.is_file():
            raise ConfigError(f"configuration file not found: {path}")
        return path
    candidate = path / CONFIG_FILE
    if not candidate.is_file():
        if not path.exists():
            raise ConfigError(f"project folder not found: {path}")
        raise ConfigError(f"no {CONFIG_FILE} in {path} (run `mlpack init NAME` to create a project)")
    return candidate


def load_config(project: str | Path = ".") -> Config:
    path = find_config_file(project)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib reads nested arrays and tables recursively
        raise ConfigError(f"{path}: values are nested too deeply to be a configuration") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    return parse_config(raw, path=path)


def parse_config(raw: dict[str, Any], *, path: Path = Path(CONFIG_FILE)) -> Config:
    config = _read_section(Config, raw, where=str(path), section="")
    config = dataclasses.replace(
        config, project_dir=path.parent.resolve(), path=path, image_configured=isinstance(raw.get("image"), dict)
    )
    _check_semantics(config, str(path))
    rules.declare_secrets(config)
    fields = _split_fields(config, str(path))
    # The filters as MongoDB takes them, parsed once here: every stage is handed the query itself.
    source_filter = _query(config.source.filter, "[source].filter", str(path))
    test_filter = _query(config.evaluation.test_filter, "[evaluation].test_filter", str(path))
    return dataclasses.replace(
        config,
        features=dataclasses.replace(config.features, split_fields=fields),
        source=dataclasses.replace(config.source, filter=source_filter),
        evaluation=dataclasses.replace(config.evaluation, test_filter=test_filter),
    )


def _query(query: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    try:
        return filters.parse_query(query)
    except ValueError as exc:
        raise ConfigError(f"{where}: {key} {exc}") from None


def with_version(config: Config, version: str) -> Config:
    """The config with the version given on the command line, checked like the file's own."""
    problem = None if version == "auto" else names.version(version)
    if problem is not None:
        shown = repr(version) if len(version) <= 80 else repr(version[:60]) + "..."
        raise ConfigError(f"--version {shown} {problem}, or 'auto'")
    return dataclasses.replace(config, model=dataclasses.replace(config.model, version=version))


def _user_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _key(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("key", f.name)


def _read_section(cls: type, raw: Any, *, where: str, section: str) -> Any:
    label = f"[{section}]" if section else "the file"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {label} must be a table")
    fields = _user_fields(cls)
    known = {_key(f): f for f in fields}
    for key in raw:
        if key not in known:
            hint = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(known)})"
            where_key = f"[{section}].{key}" if section else f"[{key}]"
            raise ConfigError(f"{where}: unknown key {where_key}{suggestion}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, f in known.items():
        dotted = f"[{section}].{key}" if section else f"[{key}]"
        if key not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required key {dotted}")
            continue
        expected = _optional_section(hints[f.name])
        if isinstance(expected, type) and dataclasses.is_dataclass(expected):
            values[f.name] = _read_section(
                expected, raw[key], where=where, section=f"{section}.{key}" if section else key
            )
        else:
            values[f.name] = _check_type(raw[key], expected, f"{where}: {dotted}")
    return cls(**values)


def _optional_section(tp: Any) -> Any:
    """`SearchSection | None` (a table that may be left out) reads as the section itself."""
    if isinstance(tp, types.UnionType):
        sections = [t for t in typing.get_args(tp) if isinstance(t, type) and dataclasses.is_dataclass(t)]
        if len(sections) == 1:
            return sections[0]
    return tp


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        item = typing.get_args(tp)[0]
        plural = {str: "strings", int: "integers", float: "numbers", bool: "true or false values"}.get(item)
        return f"a list of {plural or _type_name(item)}"
    if origin is dict:
        return "a table"
    if isinstance(tp, types.UnionType) or origin is typing.Union:
        return " or ".join(_type_name(option) for option in typing.get_args(tp))
    if tp is Any:
        return "value"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _check_type(value: Any, tp: Any, label: str) -> Any:
    origin = typing.get_origin(tp)
    ok: bool
    if origin is Literal:
        ok = value in typing.get_args(tp)
    elif origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            ok = False
        else:
            return [_check_type(v, item, f"{label}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            ok = False
        else:
            for k, v in value.items():
                if isinstance(v, dict) and v and typing.get_origin(item) is not dict and item is not Any:
                    # TOML reads { a.b = 1 } as { a = { b = 1 } }: a dotted field path as a key needs quotes.
                    inner = next(iter(v))
                    raise ConfigError(f'{label}.{k} is a table: quote a dotted field path, "{k}.{inner}" = ...')
            return {k: _check_type(v, item, f"{label}.{k}") for k, v in value.items()}
    elif tp is Any:
        return value
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(tp, type):
        ok = isinstance(value, tp)
    elif isinstance(tp, types.UnionType) or origin is typing.Union:  # the first option the value is
        for option in typing.get_args(tp):
            try:
                return _check_type(value, option, label)
            except ConfigError:
                continue
        ok = False
    else:  # pragma: no cover
        raise TypeError(f"unsupported schema type {tp}")
    if not ok:
        raise ConfigError(f"{label} must be {_type_name(tp)}, got {value!r}")
    return value


def _check_semantics(config: Config, where: str) -> None:
    """Rules that span more than one value's type."""
    features = config.features
    _check_named_values(config, where)
    listed = [*features.numeric, *features.categorical, *features.datetime, *features.text]
    if not listed and not features.derived:
        raise ConfigError(f"{where}: [features] needs at least one of numeric, categorical, datetime, text or derived")
    seen: set[str] = set()
    for path in [*listed, features.target, *([features.weight] if features.weight else [])]:
        if not path or path.startswith("$") or ".." in path or path.startswith(".") or path.endswith("."):
            raise ConfigError(f"{where}: [features] field path {path!r} is not a valid dotted path")
        if path in seen:
            raise ConfigError(f"{where}: [features] field {path!r} is listed twice")
        seen.add(path)
    _check_feature_engineering(config, where)
    if features.labels and config.model.task != "classification":
        raise ConfigError(f"{where}: [features].labels names classes, but [model].task is {config.model.task}")
    if config.source.limit < 0:
        raise ConfigError(f"{where}: [source].limit must be 0 (all) or a positive integer")
    if not 0 < config.evaluation.test_size < 1:
        raise ConfigError(f"{where}: [evaluation].test_size must be between 0 and 1, got {config.evaluation.test_size}")
    _check_experiments(config, where)
    rules.check_champion(config, where)
    rules.check_estimator(config, where)
    _check_feedback(config, where)
    if config.export.parity_tolerance < 0:
        raise ConfigError(f"{where}: [export].parity_tolerance must not be negative")
    problem = config.serve.problem()
    if problem:
        raise ConfigError(f"{where}: {problem}")
    check_image(config, where)
    if config.monitor.problem() is not None:
        raise ConfigError(f"{where}: {config.monitor.problem()}")


def _check_feedback(config: Config, where: str) -> None:
    """[source.feedback]: names MongoDB takes, and a window whose ends read as times (checked again at build)."""
    feedback = config.source.feedback
    if feedback is None:
        return
    key = "[source.feedback]"
    for name, value, check in (
        ("database", feedback.database, names.mongo_database),
        ("collection", feedback.collection, names.mongo_collection),
        ("uri_env", feedback.uri_env, names.env_name),
    ):
        problem = check(value) if value else None
        if problem is not None:
            raise ConfigError(f"{where}: {key}.{name} {value[:60]!r} {problem}")
    try:
        Window.parse(
            feedback.since or None, feedback.until or None, flags=(f"{key}.since", f"{key}.until"), open_ended=True
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _check_experiments(config: Config, where: str) -> None:
    """[evaluation].cv and [search]: fold counts, a non-empty space. Param names are checked against
    the estimator itself (mlpack.experiments), which config knows nothing of."""
    if config.evaluation.cv == 1 or config.evaluation.cv < 0:
        raise ConfigError(f"{where}: [evaluation].cv must be 0 (no cross-validation) or at least 2 folds")
    search = config.search
    if search is None:
        return
    if not search.params:
        raise ConfigError(f"{where}: [search].params is empty: give each parameter a list of values to try")
    for name, values in search.params.items():
        if not values:
            raise ConfigError(f"{where}: [search].params.{name} is an empty list: give at least one value")
    if search.cv == 1 or search.cv < 0:
        raise ConfigError(f"{where}: [search].cv must be at least 2 folds (or left out: [evaluation].cv, else 3)")
    if search.n_iter < 1:
        raise ConfigError(f"{where}: [search].n_iter must be at least 1")


def _optional(check: names.Checker) -> names.Checker:
    return lambda value: check(value) if value else None


# Every value another tool reads (pip, twine, Docker, MongoDB), with the grammar it must satisfy:
# checked before any data is read, each failure naming its key (exit 2).
_NAMED_VALUES: list[tuple[str, Callable[[Config], str], names.Checker]] = [
    ("[model].name", lambda c: c.model.name, names.package_name),
    ("[model].version", lambda c: c.model.version, lambda v: None if v == "auto" else names.version(v)),
    ("[model].description", lambda c: c.model.description, names.one_line),
    ("[source].uri_env", lambda c: c.source.uri_env, names.env_name),
    ("[source].database", lambda c: c.source.database, names.mongo_database),
    ("[source].collection", lambda c: c.source.collection, names.mongo_collection),
    ("[source].seed", lambda c: c.source.seed, names.plain_path),
    ("[registry].collection", lambda c: c.registry.collection, names.mongo_collection),
    ("[image].base", lambda c: c.image.base, image_base),
    ("[image].tag", lambda c: c.image.tag, _optional(names.image_tag)),
    ("[image].python", lambda c: c.image.python, _optional(names.python_version)),
    ("[image].arch", lambda c: c.image.arch, _optional(names.arch)),
    ("[image].find_links", lambda c: c.image.find_links, names.plain_path),
    ("[image].registry_ca", lambda c: c.image.registry_ca, names.plain_path),
    ("[sign].key_env", lambda c: c.sign.key_env if c.sign else "MLPACK_SIGNING_KEY", names.env_name),
    ("[sign].key_file", lambda c: c.sign.key_file if c.sign else "", names.plain_path),
    ("[sign].password_env", lambda c: c.sign.password_env if c.sign else "", _optional(names.env_name)),
    ("[serve].inference_log_uri_env", lambda c: c.serve.inference_log_uri_env, names.env_name),
    ("[serve].inference_log_database", lambda c: c.serve.inference_log_database, names.mongo_database),
    ("[serve].inference_log_collection", lambda c: c.serve.inference_log_collection, names.mongo_collection),
]


def _check_named_values(config: Config, where: str) -> None:
    for key, read, check in _NAMED_VALUES:
        value = read(config)
        problem = check(value)
        if problem is not None:
            shown = repr(value) if len(value) <= 80 else repr(value[:60]) + "..."
            raise ConfigError(f"{where}: {key} {shown} {problem}")


def _check_feature_engineering(config: Config, where: str) -> None:
    features, preprocessing = config.features, config.preprocessing
    try:
        expression_fields = features.expression_fields  # parses [features.derived]: exit 2 on any mistake
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", details=exc.details) from None
    if features.target in expression_fields or features.target in features.derived:
        raise ConfigError(f"{where}: [features.derived] must not read the target '{features.target}'")
    if features.target_transform and config.model.task != "regression":
        raise ConfigError(
            f"{where}: [features].target_transform is for regression; [model].task is {config.model.task}"
        )
    for path, order in features.ordinal.items():
        if path not in features.categorical:
            raise ConfigError(f"{where}: [features].ordinal names '{path}': list it under [features].categorical too")
        if not order or len(set(order)) != len(order):
            raise ConfigError(f"{where}: [features].ordinal.{path} must list each category once, lowest first")
    for path, encoding in features.encoding.items():
        if path not in features.categorical:
            raise ConfigError(f"{where}: [features].encoding names '{path}': list it under [features].categorical too")
        if path in features.ordinal:
            raise ConfigError(
                f"{where}: [features].encoding.{path} = {encoding!r}, but [features].ordinal already encodes it"
            )
    if preprocessing.encoding_min_count < 1:
        raise ConfigError(f"{where}: [preprocessing].encoding_min_count must be at least 1")
    if preprocessing.target_folds < 2:
        raise ConfigError(f"{where}: [preprocessing].target_folds must be at least 2")
    if preprocessing.max_categories < 2:
        raise ConfigError(f"{where}: [preprocessing].max_categories must be at least 2")
    if preprocessing.text_max_words < 1:
        raise ConfigError(f"{where}: [preprocessing].text_max_words must be at least 1")
    _check_text_options(preprocessing, where)


def _check_text_options(preprocessing: PreprocessingSection, where: str) -> None:
    if preprocessing.text_ngrams not in (1, 2):
        raise ConfigError(f"{where}: [preprocessing].text_ngrams must be 1 (single words) or 2 (and two-word phrases)")
    if preprocessing.text_min_df < 1:
        raise ConfigError(f"{where}: [preprocessing].text_min_df must be at least 1 (a number of documents)")
    chars = preprocessing.text_chars
    if chars and not (len(chars) == 2 and 1 <= chars[0] <= chars[1] <= MAX_CHAR_NGRAM):
        raise ConfigError(
            f"{where}: [preprocessing].text_chars must be [lo, hi] with 1 <= lo <= hi <= {MAX_CHAR_NGRAM} "
            f"(character n-grams of lo to hi characters), got {chars}"
        )
    if chars and preprocessing.text_stop_words:
        raise ConfigError(f"{where}: [preprocessing].text_stop_words are words: text_chars counts characters instead")
    if chars and preprocessing.text_ngrams != 2:
        raise ConfigError(f"{where}: [preprocessing].text_ngrams counts words: with text_chars, give [lo, hi] there")


def _split_fields(config: Config, where: str) -> tuple[str, ...]:
    """[evaluation].split and what it needs: the fields the split reads (loaded with the data)."""
    evaluation = config.evaluation
    kind, path, query = evaluation.split, evaluation.split_field, evaluation.test_filter
    if kind in ("time", "group"):
        if not path:
            what = "a date field (its newest documents are the test split)" if kind == "time" else "a field to group by"
            raise ConfigError(f'{where}: [evaluation].split = "{kind}" needs split_field: {what}')
        if path.startswith("$") or ".." in path or path.startswith(".") or path.endswith("."):
            raise ConfigError(f"{where}: [evaluation].split_field {path!r} is not a valid dotted path")
        if query:
            raise ConfigError(f'{where}: [evaluation].test_filter is for split = "filter", not "{kind}"')
        return (path,)
    if path:
        raise ConfigError(f'{where}: [evaluation].split_field is for split = "time" or "group", not "{kind}"')
    if kind == "random":
        if query:
            raise ConfigError(f'{where}: [evaluation].test_filter needs split = "filter" (the split is "random")')
        return ()
    if not query:
        raise ConfigError(f'{where}: [evaluation].split = "filter" needs test_filter, the query of the test documents')
    try:
        return tuple(filters.filter_fields(query))
    except ValueError as exc:
        raise ConfigError(f"{where}: [evaluation].test_filter {exc}") from None
