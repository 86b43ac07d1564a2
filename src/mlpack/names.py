"""The grammars of the names mlpack hands to other tools, checked before any of them sees one.

Each checker takes a value and returns None when the value is good, else the reason it is not.
Every grammar is matched whole (`fullmatch`): a `$` anchor also matches before a trailing newline,
which is how `tag = "evil:1\\n"` once passed. All of them are ASCII: `re.IGNORECASE` on a Unicode
pattern lets `ſ` match `s` and the Kelvin sign match `k`, which is how such names reached twine.
"""

from __future__ import annotations

import keyword
import re
import sys
from collections.abc import Callable

from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

Checker = Callable[[str], "str | None"]

# Artifacts are named NAME-VERSION + a suffix ("-py3-none-any.whl", ".docker"): each must fit the
# 255 bytes a file name may have on Linux, macOS and Windows.
MAX_NAME = 128
MAX_VERSION = 64
MAX_SUMMARY = 512  # PyPI's limit on the Summary field

# docker/distribution's reference grammar (reference/regexp.go), ASCII only.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII)
PYTHON_VERSION = re.compile(r"3\.[0-9]{1,2}", re.ASCII)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# MongoDB's naming rules (docs: "Naming Restrictions"); checked here so pymongo's InvalidName
# never surfaces as a traceback in the middle of a build.
_DATABASE_FORBIDDEN = set('/\\. "$*<>:|?\x00')
MAX_DATABASE_BYTES = 63
MAX_NAMESPACE_BYTES = 255


# What a model's package may not be called: the installed wheel would hide behind the standard
# library's module of that name (it comes first on sys.path) or overwrite what the wheel runs on.
_TAKEN_IMPORT_NAMES = frozenset(sys.stdlib_module_names) | {"numpy", "onnxruntime", "mlpack"}


def import_name(value: str) -> str:
    """The model package's import name: `churn-model` → `churn_model`."""
    return re.sub(r"[-.]+", "_", value).lower()


def package_name(value: str) -> str | None:
    if len(value) > MAX_NAME:
        return f"is {len(value)} characters long (at most {MAX_NAME}, so that artifact file names fit)"
    try:
        canonicalize_name(value, validate=True)
    except InvalidName:
        return (
            "is not a valid package name (ASCII letters, digits, '-', '_', '.'; "
            "starting and ending with a letter or digit)"
        )
    module = import_name(value)
    if not module.isidentifier() or keyword.iskeyword(module):
        return (
            f"gives the import name {module!r}, which Python cannot import (`import {module}` is a syntax "
            "error): start it with a letter and avoid Python keywords"
        )
    if module in _TAKEN_IMPORT_NAMES:
        return (
            f"gives the import name {module!r}, which is taken (the standard library or a package the model "
            f"runs on): `import {module}` would not find the model"
        )
    return None


def version(value: str) -> str | None:
    if len(value) > MAX_VERSION:
        return f"is {len(value)} characters long (at most {MAX_VERSION})"
    if not value.isascii() or re.search(r"\s", value):  # packaging strips whitespace; file names would not
        return 'is not a PEP 440 version (e.g. "1.0.0")'
    try:
        Version(value)
    except InvalidVersion:
        return 'is not a PEP 440 version (e.g. "1.0.0")'
    return None


def image_reference(value: str) -> str | None:
    """A base image: [registry[:port]/]path[:tag][@digest], as `FROM` takes it."""
    match = IMAGE_REFERENCE.fullmatch(value)
    if match is None:
        return "is not an image reference (e.g. python:3.11-slim or registry.example:5000/team/python:3.11@sha256:...)"
    if len(match.group("name")) > 255:
        return "names an image longer than 255 characters"
    return None


def image_tag(value: str) -> str | None:
    """What `docker build --tag` takes: a lowercase repository name and an optional tag, no digest."""
    match = IMAGE_REFERENCE.fullmatch(value)
    if match is None or match.group("digest"):
        return "is not a valid image tag (lowercase [registry/]name[:tag], e.g. churn-model:1.0.0)"
    if len(match.group("name")) > 255:
        return "names an image longer than 255 characters"
    return None


def tag_text(version_text: str) -> str:
    """A PEP 440 version as an image tag: '+' (a local version) is not allowed there, '-' is."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", version_text)[:128]


ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def arch(value: str) -> str | None:
    return None if value.lower() in ARCHES else f"is not supported ({', '.join(sorted(ARCHES))})"


def python_version(value: str) -> str | None:
    return None if PYTHON_VERSION.fullmatch(value) else 'must look like "3.11"'


def env_name(value: str) -> str | None:
    return None if ENV_NAME.fullmatch(value) else "is not an environment variable name (letters, digits, '_')"


def one_line(value: str) -> str | None:
    """Text that ends up in a package's Summary, an image label and a README heading."""
    if len(value) > MAX_SUMMARY:
        return f"is {len(value)} characters long (at most {MAX_SUMMARY}, PyPI's limit for a summary)"
    control = _CONTROL.search(value)
    if control:
        return f"holds the control character {control.group()!r}: it must be one line of text"
    return None


def plain_path(value: str) -> str | None:
    control = _CONTROL.search(value)
    return f"holds the control character {control.group()!r}" if control else None


def mongo_database(value: str) -> str | None:
    if not value:
        return "must not be empty"
    bad = sorted(set(value) & _DATABASE_FORBIDDEN)
    if bad:
        return f"holds {''.join(bad)!r}, which MongoDB does not allow in a database name"
    if len(value.encode()) > MAX_DATABASE_BYTES:
        return f"is longer than MongoDB's {MAX_DATABASE_BYTES} bytes for a database name"
    return None


def mongo_collection(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if "$" in value or "\x00" in value:
        return "holds '$' or a NUL character, which MongoDB does not allow in a collection name"
    if value.startswith("system.") or value.startswith(".") or value.endswith("."):
        return "is a name MongoDB reserves or refuses (system.*, or a leading/trailing '.')"
    if len(value.encode()) > MAX_NAMESPACE_BYTES - MAX_DATABASE_BYTES - 1:
        return "is too long for a MongoDB namespace"
    return None


def onnx_input_names(paths: list[str]) -> dict[str, str]:
    """Feature path → ONNX input name. skl2onnx renames names holding dots, so mlpack does it first."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for path in paths:
        base = re.sub(r"\W", "_", path)
        if base[0].isdigit():
            base = f"f_{base}"
        name, n = base, 2
        while name in taken:  # "a.b" and "a_b" would otherwise collide
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        names[path] = name
    return names
