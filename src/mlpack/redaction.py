"""Credentials never reach a terminal, a log, a report or `--json`: one place knows them and hides them.

A connection string is read once (`remember_uri`); from then on `redact(text)` replaces every
secret it carried — the password in whatever shape the user typed it, and the values of the options
pymongo itself treats as sensitive — in any text mlpack prints. `display_uri` is the form to show.

Odd shapes are the point: `u:S3cr3t/Pass@h` (an unescaped `/`), `:Secret@h` (no user),
`u:S3cr3t@Pass@h` (an unescaped `@`) make pymongo's parser fail, and its own error message may
then quote a piece of the password (as a port, a host, a database). So the password is found the
way a human reads it — everything between `://` and the last `@` of the authority, after the first
`:` — and its pieces are secrets too.
"""

from __future__ import annotations

import os
import re
import threading
from urllib.parse import unquote, unquote_plus

MASK = "***"
# Query options whose values are credentials: pymongo's SENSITIVE_OPTIONS_FOR_REPR (read at run
# time when pymongo is importable) plus the ones every URI scheme uses for secrets.
_ALWAYS_SENSITIVE = frozenset(
    {
        "password",
        "proxypassword",
        "proxyusername",
        "tlscertificatekeyfilepassword",
        "sslpemkeypassword",
        "sslclientcertificatekeypassword",
        "authmechanismproperties",
        "token",
        "access_token",
        "secret",
        "api_key",
        "apikey",
    }
)
_GEN_DELIMS = re.compile(r"[:/?#\[\]@]")
# Shorter secrets (or pieces) would blank out ordinary letters in every message; `display_uri`
# still hides a short password, by its position.
_MIN_PIECE = 3

_lock = threading.Lock()
_secrets: set[str] = set()


def _sensitive_options() -> frozenset[str]:
    try:
        from pymongo.common import SENSITIVE_OPTIONS_FOR_REPR
    except ImportError:  # pragma: no cover - pymongo is a dependency of mlpack itself
        return _ALWAYS_SENSITIVE
    return _ALWAYS_SENSITIVE | frozenset(SENSITIVE_OPTIONS_FOR_REPR)


def _split(uri: str) -> tuple[str, str, str, str]:
    """(scheme://, userinfo, the rest of the authority and path, ?query) — '' where absent.

    The userinfo ends at the last '@' before the query; if the query itself holds the only '@'
    (a password with an unescaped '?'), at the last '@' of all: hiding too much beats leaking.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "", "", uri, ""
    before_query, question, query = rest.partition("?")
    at = before_query.rfind("@")
    if at < 0 and "@" in query:
        at = rest.rfind("@")
        return f"{scheme}://", rest[:at], rest[at + 1 :], ""
    if at < 0:
        return f"{scheme}://", "", before_query, question + query
    return f"{scheme}://", before_query[:at], before_query[at + 1 :], question + query


def _variants(secret: str) -> set[str]:
    """The secret as typed, percent-decoded both ways, and its pieces between URI delimiters."""
    found = {secret, unquote(secret), unquote_plus(secret)}
    for text in list(found):
        found.update(piece for piece in _GEN_DELIMS.split(text) if len(piece) >= _MIN_PIECE)
    return {s for s in found if len(s) >= _MIN_PIECE}


def _option_pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for item in re.split(r"[&;]", query.lstrip("?")):
        key, eq, value = item.partition("=")
        if eq:
            pairs.append((key, value))
    return pairs


def uri_secrets(uri: str) -> set[str]:
    """Every credential a connection string (MongoDB, or an index URL) carries, in every form."""
    secrets: set[str] = set()
    _, userinfo, _, query = _split(uri)
    if userinfo:
        _, colon, password = userinfo.partition(":")
        if colon and password:
            secrets |= _variants(password)
    sensitive = _sensitive_options()
    for key, value in _option_pairs(query):
        if key.lower() in sensitive and value:
            secrets |= _variants(value)
    secrets |= _parsed_secrets(uri)
    return secrets


def _parsed_secrets(uri: str) -> set[str]:
    """What pymongo's own parser calls the password, where it parses the string at all."""
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        return set()
    try:
        from pymongo.uri_parser import parse_uri

        # The SRV scheme would make the parser ask DNS; the credentials read the same either way.
        parsed = parse_uri(uri.replace("mongodb+srv://", "mongodb://", 1), validate=False, warn=False)
    except Exception:  # any shape pymongo refuses is covered by the reading above
        return set()
    found: set[str] = set()
    if parsed.get("password"):
        found |= _variants(str(parsed["password"]))
    options = parsed.get("options") or {}
    sensitive = _sensitive_options()
    for key, value in dict(options).items():
        if key.lower() in sensitive and value:
            values = value.values() if isinstance(value, dict) else [value]
            for item in values:
                found |= _variants(str(item))
    return found


def display_uri(uri: str) -> str:
    """The connection string to show: password and sensitive option values as `***`."""
    scheme, userinfo, rest, query = _split(uri)
    shown = scheme
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        shown += f"{user}{':' + MASK if colon else ''}@"
    shown += rest
    if query:
        sensitive = _sensitive_options()
        shown += re.sub(
            r"(?<=[?&;])([^=&;]+)=([^&;]*)",
            lambda m: f"{m.group(1)}={MASK}" if m.group(1).lower() in sensitive else m.group(0),
            query,
        )
    return redact(shown, extra=uri_secrets(uri))


def remember_uri(uri: str) -> str:
    """Note a connection string's secrets for every later `redact`; returns its display form."""
    secrets = uri_secrets(uri)
    with _lock:
        _secrets.update(secrets)
    return display_uri(uri)


def remember_secret(secret: str) -> None:
    """Note a secret that came on its own (a registry password) for every later `redact`."""
    if len(secret) >= _MIN_PIECE:  # as for a URI's: shorter ones would blank out ordinary letters
        with _lock:
            _secrets.add(secret)


def redact(text: str, *, extra: set[str] | frozenset[str] = frozenset()) -> str:
    """`text` with every remembered secret (and `extra`) replaced by `***`. Longest first, so a
    piece of a password never leaves the rest of it readable."""
    with _lock:
        secrets = _secrets | set(extra)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def forget_all() -> None:
    """For tests: drop every remembered secret (and every secret variable)."""
    with _lock:
        _secrets.clear()
        _SECRET_VARIABLES.clear()


# -- secrets in the environment --------------------------------------------------------------------
# The variables that hold a secret mlpack read (the signing key, its password): the tools a build
# runs (python -m build, twine, pip, docker, skopeo) get an environment without them, so no child
# process, its logs or its crash reports ever hold the key.
_SECRET_VARIABLES: set[str] = set()


def remember_secret_variable(name: str) -> None:
    with _lock:
        _SECRET_VARIABLES.add(name)


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ without the variables that hold secrets mlpack read, with `extra` on top."""
    with _lock:
        hidden = set(_SECRET_VARIABLES)
    return {**{k: v for k, v in os.environ.items() if k not in hidden}, **(extra or {})}
