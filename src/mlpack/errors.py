"""One exception hierarchy; each kind carries the exit code the CLI returns for it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlpack.redaction import redact


class MlpackError(Exception):
    """Base of every error mlpack reports to a user instead of a traceback."""

    exit_code = 2

    def __init__(self, message: str, *, details: str = "") -> None:
        # Messages quote URIs and foreign errors: whatever credential they carry is hidden here,
        # for library callers too, and again by the CLI at output time.
        message, details = redact(message), redact(details)
        super().__init__(message)
        self.message = message
        self.details = details  # a multi-line report printed after the message


class ConfigError(MlpackError):
    """Bad usage or bad configuration: a key, a file, a value the user must change."""

    exit_code = 2


class DataError(MlpackError):
    """The training data failed validation."""

    exit_code = 1


class QualityGateError(MlpackError):
    """A metric fell below its gate, or ONNX and scikit-learn disagreed beyond the tolerance."""

    exit_code = 1

    def __init__(self, message: str, *, metadata: dict[str, Any], details: str = "") -> None:
        super().__init__(message, details=details)
        # The rejected model's metadata (its metrics, parity, the champion's scores): the registry records it.
        self.metadata: dict[str, Any] = metadata


class VerificationError(MlpackError):
    """An artifact is not what its build's provenance, SBOM or signature says (`mlpack verify`)."""

    exit_code = 1


class ExternalError(MlpackError):
    """Something outside mlpack failed: the database, the package tools, the Docker engine."""

    exit_code = 3


# -- outside exceptions → mlpack errors, in one place ---------------------------------------------
# Like httpx's `map_exceptions`: a call site says who it talks to (`outside("MongoDB", target=...)`),
# and this table says what each foreign exception means for the user. Classes are named by their
# qualified names, so this bottom module imports neither pymongo nor anything else it maps.


@dataclass(frozen=True)
class Context:
    party: str  # who was being talked to: "MongoDB", "the Docker engine", "twine"
    target: str = ""  # where, safe to print (a redacted URI, an image tag, a file)
    action: str = ""  # what mlpack was doing: "connecting", "reading crm.customers"


Handler = Callable[[BaseException, Context], "MlpackError | None"]


def _summary(exc: BaseException) -> str:
    """One complete sentence of a foreign error: pymongo's server-selection errors append a
    topology description and timeouts, cut here at a clause boundary, never mid-word."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.split(r", Timeout: | \(configured timeouts|, Topology Description: ", text, maxsplit=1)[0]
    return text if len(text) <= 300 else text[:297].rsplit(" ", 1)[0] + " ..."


def _where(ctx: Context) -> str:
    return f"{ctx.party} at {ctx.target}" if ctx.target else ctx.party


def _invalid_connection_string(exc: BaseException, ctx: Context) -> MlpackError | None:
    if ctx.action != "connecting":
        return None
    if "DNS" in str(exc):  # an SRV record that does not resolve: the name is well-formed, the world is not
        return ExternalError(f"{_where(ctx)} cannot be found: {_summary(exc)}")
    return ConfigError(f"the {ctx.party} connection string {ctx.target!r} is invalid: {_summary(exc)}")


def _unreadable_file(exc: BaseException, ctx: Context) -> MlpackError | None:
    if ctx.action != "connecting":
        return None
    return ConfigError(
        f"a file named in the {ctx.party} connection string {ctx.target!r} cannot be read "
        f"(tlsCertificateKeyFile, tlsCAFile, ...): {getattr(exc, 'strerror', None) or _summary(exc)}"
    )


def _operation_failure(exc: BaseException, ctx: Context) -> MlpackError:
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None) or {}
    message = details.get("errmsg") if isinstance(details, dict) else None
    if code == 18:  # AuthenticationFailed
        return ExternalError(f"{ctx.party} refused the login for {ctx.target}: authentication failed")
    if code == 13:  # Unauthorized
        return ExternalError(f"{_where(ctx)} did not allow {ctx.action or 'the operation'}: {message or _summary(exc)}")
    if ctx.action == "connecting":
        return ExternalError(f"{_where(ctx)} refused the connection: {message or _summary(exc)}")
    return ConfigError(f"{ctx.party} rejected {ctx.action or 'the operation'}: {message or _summary(exc)}")


def _unreachable(exc: BaseException, ctx: Context) -> MlpackError:
    return ExternalError(f"{_where(ctx)} is unreachable: {_summary(exc)}")


# TLS: pymongo keeps OpenSSL's reason only as text, so it is read from the message. Which side's
# certificate failed is told apart by who said so: a verify failure is the client refusing the
# server's certificate; a handshake the server ends (with an alert, or by closing it) is the server
# refusing the client's. The line names the server by its hosts; the option at fault is quoted.
_VERIFY_FAILED = re.compile(r"certificate verify failed: (.+?)\.?\s*(?:\(_ssl\.c:\d+\)|$)", re.IGNORECASE)
_CLIENT_REFUSED = [  # (OpenSSL's alert or error, what it says of the client certificate), first match wins
    (re.compile(r"CERTIFICATE_REQUIRED|certificate required", re.IGNORECASE), ""),
    (re.compile(r"CERTIFICATE_EXPIRED|certificate expired", re.IGNORECASE), "it has expired"),
    (re.compile(r"UNKNOWN_CA|unknown ca", re.IGNORECASE), "it is not signed by a CA the server trusts"),
    (re.compile(r"BAD_CERTIFICATE|UNSUPPORTED_CERTIFICATE|bad certificate", re.IGNORECASE), "the server rejects it"),
    (
        re.compile(r"EOF occurred in violation of protocol|connection reset by peer", re.IGNORECASE),
        "the server closed the handshake: not signed by a CA it trusts, expired, or not for client use?",
    ),
]
_NOT_SIGNED = ("self-signed certificate", "self signed certificate", "issuer certificate", "first certificate")


def _option(uri: str, name: str) -> str | None:
    """The value the (displayed) connection string gives option `name`, or None."""
    found = re.search(rf"[?&;]{name}=([^&;]*)", uri, re.IGNORECASE)
    return found.group(1) if found else None


def _server(ctx: Context) -> str:
    """'MongoDB at mongodb://HOSTS/': the connection string without its options, which the line quotes."""
    return f"{ctx.party} at {ctx.target.split('?', 1)[0]}" if ctx.target else ctx.party


def _server_certificate(reason: str, uri: str) -> str:
    lower = reason.lower()
    if "expired" in lower:
        return f"the server's TLS certificate has expired ({reason})"
    if "not yet valid" in lower:
        return f"the server's TLS certificate is not valid yet ({reason})"
    if "mismatch" in lower:
        return f"the server's TLS certificate is for another host name ({reason})"
    if any(phrase in lower for phrase in _NOT_SIGNED):
        ca_file = _option(uri, "tlsCAFile")
        if ca_file:
            return f"the server's TLS certificate is not signed by the CA in tlsCAFile {ca_file} ({reason})"
        return f"the server's TLS certificate is not signed by a CA this machine trusts: set tlsCAFile ({reason})"
    return f"the server's TLS certificate was refused: {reason}"


def _tls_failure(exc: BaseException, ctx: Context) -> MlpackError | None:
    """One line naming the certificate at fault, or None (then: unreachable, as any other failure)."""
    text, uri = str(exc), ctx.target
    verify = _VERIFY_FAILED.search(text)
    if verify:
        return ExternalError(f"{_server(ctx)}: {_server_certificate(verify.group(1).strip(), uri)}")
    if ctx.action != "connecting":  # a connection lost later is not a refused certificate
        return None
    tls = uri.startswith("mongodb+srv://") or (_option(uri, "tls") or _option(uri, "ssl") or "").lower() == "true"
    if not tls:
        if "connection reset by peer" in text.lower():
            return ExternalError(f"{_where(ctx)} reset the connection: if the server requires TLS, add tls=true")
        return None
    for pattern, meaning in _CLIENT_REFUSED:
        if pattern.search(text):
            key_file = _option(uri, "tlsCertificateKeyFile")
            if not key_file:
                return ExternalError(
                    f"{_server(ctx)} requires a TLS client certificate, and the connection string names none: "
                    "set tlsCertificateKeyFile"
                )
            return ExternalError(
                f"{_server(ctx)} refused the client certificate in tlsCertificateKeyFile {key_file}: {meaning}"
            )
    if "No servers found yet" in text:
        return ExternalError(f"{_server(ctx)} did not complete a TLS handshake: is TLS on at the server?")
    return None


def _client_key(exc: BaseException, ctx: Context) -> MlpackError | None:
    """OpenSSL's words for a key it cannot use with its certificate: most often a wrong password."""
    if ctx.action != "connecting" or "PEM lib" not in str(exc):
        return None
    key_file = _option(ctx.target, "tlsCertificateKeyFile") or "(tlsCertificateKeyFile)"
    return ConfigError(
        f"the client certificate file {key_file} cannot be used: a wrong tlsCertificateKeyFilePassword, "
        "or no key (or another certificate's key) in the file"
    )


def _invalid_name(exc: BaseException, ctx: Context) -> MlpackError:
    return ConfigError(f"{ctx.party} refuses the name used for {ctx.action or 'the operation'}: {_summary(exc)}")


def _unstorable(exc: BaseException, ctx: Context) -> MlpackError:
    return ConfigError(f"a document cannot be stored in {ctx.party} ({ctx.action or 'writing'}): {_summary(exc)}")


def _other_driver_error(exc: BaseException, ctx: Context) -> MlpackError:
    what = f" while {ctx.action}" if ctx.action else ""
    return ExternalError(f"{_where(ctx)} failed{what}: {_summary(exc)}")


def _timed_out(exc: BaseException, ctx: Context) -> MlpackError:
    return ExternalError(f"{_where(ctx)} did not answer in {getattr(exc, 'timeout', '?')} s")


def _not_installed(exc: BaseException, ctx: Context) -> MlpackError | None:
    if ctx.action != "running":
        return None
    return ExternalError(f"{ctx.party} is not installed or not on PATH ({getattr(exc, 'filename', '') or ''})")


# Most specific first: the first entry whose class is in the exception's MRO and whose handler
# answers wins. A handler returns None to say "not in this context".
_TABLE: list[tuple[str, Handler]] = [
    ("pymongo.errors.InvalidURI", _invalid_connection_string),
    ("pymongo.errors.ConfigurationError", _client_key),
    ("pymongo.errors.ConfigurationError", _invalid_connection_string),
    ("builtins.FileNotFoundError", _not_installed),
    ("builtins.OSError", _unreadable_file),
    ("builtins.ValueError", _invalid_connection_string),
    ("builtins.TypeError", _invalid_connection_string),
    ("pymongo.errors.OperationFailure", _operation_failure),
    ("pymongo.errors.InvalidName", _invalid_name),
    ("bson.errors.InvalidDocument", _unstorable),
    ("builtins.OverflowError", _unstorable),
    ("pymongo.errors.ConnectionFailure", _tls_failure),
    ("pymongo.errors.ConnectionFailure", _unreachable),
    ("pymongo.errors.PyMongoError", _other_driver_error),
    ("subprocess.TimeoutExpired", _timed_out),
]


def translate(exc: BaseException, ctx: Context) -> MlpackError | None:
    """The mlpack error a foreign exception means in this context, or None (a bug: let it show)."""
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}
    for qualname, handler in _TABLE:
        if qualname in names:
            error = handler(exc, ctx)
            if error is not None:
                return error
    return None


@contextmanager
def outside(party: str, *, target: str = "", action: str = "") -> Iterator[None]:
    """Run a call to an outside party; its exceptions leave as mlpack errors (see `_TABLE`)."""
    try:
        yield
    except MlpackError:
        raise
    except Exception as exc:
        error = translate(exc, Context(party, target, action))
        if error is None:
            raise
        raise error from None  # the foreign text may quote credentials: it is not kept
