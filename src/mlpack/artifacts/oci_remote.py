"""A registry over the OCI distribution API: references, credentials, TLS with a custom CA, one-line errors.

The HTTP side is oras-py's (`oras.provider.Registry`): its auth backends answer a registry's
challenge, `Basic` with the credentials, or `Bearer` with a token from the realm it names
(anonymous, or with the credentials), and find credentials in docker's config.json. Three things are
done here instead: the backend is chosen from the registry's own challenge (oras' token backend
turns a `Basic realm="..."` challenge into a request to that realm as a URL); its retry decorator
is stepped around (it sleeps 2 minutes on an unreachable registry); and every request has a timeout.
Manifests are sent as the exact bytes their digest names: oras' `upload_manifest` re-serialises.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from mlpack import names
from mlpack.errors import ConfigError, ExternalError
from mlpack.redaction import remember_secret

logging.getLogger("oras.logger").addHandler(logging.NullHandler())  # its warnings are ours to tell
logging.getLogger("oras.logger").propagate = False

DOCKER_HUB = "registry-1.docker.io"
TIMEOUT_S = 30.0
CHUNK = 1 << 20
USERNAME_ENV, PASSWORD_ENV = "MLPACK_REGISTRY_USERNAME", "MLPACK_REGISTRY_PASSWORD"
_ERROR_CODES = {  # the distribution spec's error codes, as a user should read them
    "NAME_UNKNOWN": "no such repository",
    "MANIFEST_UNKNOWN": "no such image (tag or digest)",
    "BLOB_UNKNOWN": "a blob it needs is missing",
    "MANIFEST_INVALID": "the manifest is invalid",
    "DENIED": "access denied",
    "UNAUTHORIZED": "authentication required",
    "UNSUPPORTED": "not supported",
    "TOOMANYREQUESTS": "too many requests",
}


class RegistryMismatch(ExternalError):
    """The registry answered bytes that are not the ones asked for: a blob or manifest that does not hash to
    its digest, an artifact attached to another image. Changed content, not a failed connection: a build
    pulling its base stops on it like any registry failure (exit 3), and `mlpack verify` of a pushed image
    reports it as the failed check it is (exit 1)."""


@dataclass(frozen=True)
class ImageReference:
    registry: str  # host[:port], as the API's URLs take it
    repository: str  # library/python
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str, *, what: str = "the image reference") -> ImageReference:
        """docker's grammar: a first component with a '.', a ':' or 'localhost' is a registry, else Docker Hub."""
        match = names.IMAGE_REFERENCE.fullmatch(text)
        if match is None or len(match.group("name")) > 255:
            raise ConfigError(f"{what} {text!r} is not an image reference (HOST[:PORT]/REPOSITORY[:TAG][@sha256:...])")
        name = match.group("name")
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name if "/" in name else f"library/{name}"
        if repository != repository.lower():
            raise ConfigError(f"{what} {text!r}: a repository name is lowercase")
        digest = match.group("digest") or ""
        if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ConfigError(f"{what} {text!r}: only sha256 digests (64 lowercase hex digits) are supported")
        return cls(registry, repository, match.group("tag") or "", digest)

    @property
    def target(self) -> str:
        """What the manifest URL names: the digest if there is one, else the tag, else latest."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> ImageReference:
        return ImageReference(self.registry, self.repository, tag, "")

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        return text + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __post_init__(self) -> None:
        # A secret from the moment it is held (read from the environment, a flag or stdin), not only once a
        # client uses it: no message, report or --json output can show it from here on.
        remember_secret(self.password)

    def __repr__(self) -> str:  # a traceback or a debugger never shows the password
        return f"Credentials(username={self.username!r}, password='***')"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Credentials | None:
        """MLPACK_REGISTRY_USERNAME and MLPACK_REGISTRY_PASSWORD, or None (then docker's config.json)."""
        username, password = environ.get(USERNAME_ENV, ""), environ.get(PASSWORD_ENV, "")
        if bool(username) != bool(password):
            missing = PASSWORD_ENV if username else USERNAME_ENV
            raise ConfigError(f"registry credentials: {missing} is not set (set both, or neither)")
        return cls(username, password) if username else None


@dataclass(frozen=True)
class Connection:
    """How to reach a registry: TLS trust, plain HTTP for a loopback one, and who to be."""

    ca_file: Path | None = None  # a PEM bundle: the CA that signed the registry's certificate
    plain_http: bool = False
    credentials: Credentials | None = None
    timeout: float = TIMEOUT_S
    ca_option: str = "--ca-file"  # where the user names the CA: for the messages
    plain_option: str = "--plain-http"  # where the user asks for plain HTTP: for the messages


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryClient:
    """One repository on one registry; every failure leaves as a one-line MlpackError."""

    def __init__(self, reference: ImageReference, connection: Connection | None = None) -> None:
        import oras.provider  # the [oci] extra; imported here so `import mlpack` does not need it

        self.reference = reference
        self.connection = connection = connection or Connection()
        if connection.ca_file is not None and not connection.ca_file.is_file():
            raise ConfigError(f"the registry CA file {connection.ca_file} ({connection.ca_option}) does not exist")
        self.base = f"{'http' if connection.plain_http else 'https'}://{reference.registry}"
        self._oras_provider = oras.provider
        self._registry: Any = None
        self._basic = self._logged_in = False

    # -- the connection ---------------------------------------------------------------------------
    def _connect(self) -> Any:
        """Ask /v2/ without credentials; its challenge says which of oras' auth backends answers it."""
        if self._registry is not None:
            return self._registry
        import requests

        connection, provider = self.connection, self._oras_provider
        verify: bool | str = str(connection.ca_file) if connection.ca_file else True
        try:
            with requests.Session() as session:
                answer = session.get(f"{self.base}/v2/", timeout=connection.timeout, verify=verify)
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc) from None
        if connection.plain_http and answer.status_code == 400 and "HTTPS server" in answer.text:
            # Go's TLS listener answers plain HTTP so ("Client sent an HTTP request to an HTTPS server.")
            raise ExternalError(
                f"the registry {self.reference.registry} speaks TLS, not plain HTTP: drop {connection.plain_option}"
            )
        challenge = answer.headers.get("WWW-Authenticate", "")
        self._basic = challenge.lower().startswith("basic")

        class Registry(provider.Registry):  # type: ignore[misc,name-defined]
            do_request = provider.Registry.do_request.__wrapped__  # without oras' sleeping retries

        registry = Registry(
            hostname=self.reference.registry,
            insecure=connection.plain_http,
            tls_verify=verify,
            auth_backend="basic" if self._basic else "token",
        )
        registry.session.request = partial(registry.session.request, timeout=connection.timeout)
        registry.auth.session = registry.session
        if connection.credentials is not None:
            registry.auth.set_basic_auth(connection.credentials.username, connection.credentials.password)
        else:  # docker login's: config.json's auths, credHelpers, credsStore (oras reads ~/.docker, not DOCKER_CONFIG)
            folder = os.environ.get("DOCKER_CONFIG")
            configs = (
                [str(Path(folder) / "config.json")] if folder and (Path(folder) / "config.json").is_file() else None
            )
            container = registry.get_container(f"{self.reference.registry}/{self.reference.repository}")
            registry.auth.load_configs(container, configs=configs)
        self._logged_in = bool(getattr(registry.auth, "_basic_auth", None))
        if answer.status_code == 401 and self._basic and not self._logged_in:
            raise ExternalError(f"the registry {self.reference.registry} requires a login: {self._how_to_login()}")
        self._registry = registry
        return registry

    def _how_to_login(self) -> str:
        return f"set {USERNAME_ENV} and {PASSWORD_ENV} (or `docker login {self.reference.registry}`)"

    def _who(self) -> str:
        credentials = self.connection.credentials
        return f"of {credentials.username!r} " if credentials is not None else "(docker's config.json) "

    def _transport_error(self, exc: BaseException) -> ExternalError:
        import requests

        where = f"the registry {self.reference.registry}"
        text = " ".join(str(exc).split())
        if isinstance(exc, requests.exceptions.SSLError) and "wrong version number" in text.lower():
            return ExternalError(
                f"{where} does not answer TLS: a plain HTTP registry? (then {self.connection.plain_option})"
            )
        if isinstance(exc, requests.exceptions.SSLError):
            verify = re.search(r"certificate verify failed: ([^(']+)", text)
            reason = verify.group(1).strip().rstrip(".") if verify else text[:200]
            if self.connection.ca_file is not None:
                return ExternalError(
                    f"{where}: its TLS certificate is not trusted with the CA file {self.connection.ca_file} ({reason})"
                )
            return ExternalError(
                f"{where}: its TLS certificate is not trusted ({reason}): name its CA with {self.connection.ca_option}"
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return ExternalError(f"{where} did not answer in {self.connection.timeout:g} s")
        return ExternalError(f"{where} is unreachable ({type(exc).__name__}): is it running, and is the address right?")

    def request(
        self, method: str, path: str, *, data: Any = None, headers: dict[str, str] | None = None, stream: bool = False
    ) -> Any:
        """One request to `/v2/<repository>/<path>` (or a full URL), authenticated as the registry asks."""
        import requests

        registry = self._connect()
        url = path if path.startswith(("http://", "https://")) else f"{self.base}/v2/{self.reference.repository}/{path}"
        try:
            sent = dict(headers or {})
            if self._basic and self._logged_in:  # sent at once: a layer is not uploaded twice
                sent.update(registry.auth.get_auth_header())
            response = registry.do_request(url, method, data=data, headers=sent, stream=stream)
            if response.status_code == 401 and getattr(registry.auth, "token", None):
                # A token for fewer actions (pull) than this request needs (push): oras would send the same
                # token again; asking anew makes it answer the new challenge's scope.
                registry.auth.token = None
                response = registry.do_request(url, method, data=data, headers=dict(headers or {}), stream=stream)
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc) from None
        except ValueError:  # oras: "Cannot respond to request for authentication." (no token was given)
            response = None
        if response is None or response.status_code == 401:
            if not self._logged_in:
                raise ExternalError(f"the registry {self.reference.registry} requires a login: {self._how_to_login()}")
            raise ExternalError(
                f"the registry {self.reference.registry} refused the login {self._who()}(wrong user name or password?)"
            )
        return response

    def fail(self, response: Any, action: str) -> ExternalError:
        """The registry's own error codes, in a line."""
        codes = []
        try:
            for error in response.json().get("errors", []):
                code = str(error.get("code", ""))
                said = f": {error['message']}" if "message" in error else ""
                codes.append(_ERROR_CODES.get(code, code.lower()) + said)
        except (ValueError, AttributeError, TypeError):
            pass
        said = "; ".join(codes)[:300] or (response.reason or "")
        return ExternalError(
            f"the registry {self.reference.registry} answered {response.status_code} when {action} "
            f"{self.reference.repository}" + (f": {said}" if said else "")
        )

    # -- blobs and manifests -------------------------------------------------------------------------
    def get_manifest(self, target: str, accept: list[str]) -> tuple[bytes, str]:
        """The manifest (or index) bytes and media type; one named by digest is checked against it."""
        response = self.request("GET", f"manifests/{target}", headers={"Accept": ", ".join(accept)})
        if response.status_code == 404:
            raise ConfigError(
                f"the registry {self.reference.registry} has no image {self.reference.repository}:{target}"
            )
        if response.status_code != 200:
            raise self.fail(response, f"reading the manifest {target} of")
        data = response.content
        if len(data) > 16 << 20:
            raise ExternalError(f"the manifest {target} of {self.reference} is larger than 16 MiB")
        if target.startswith("sha256:") and digest_bytes(data) != target:
            registry = self.reference.registry
            raise RegistryMismatch(f"the registry {registry} sent a manifest that does not match {target}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return data, media_type

    def has_manifest(self, target: str, accept: list[str]) -> bool:
        response = self.request("HEAD", f"manifests/{target}", headers={"Accept": ", ".join(accept)})
        return bool(response.status_code == 200)

    def download_blob(self, digest: str, out: Path) -> None:
        """The blob into `out` (through a temporary name), refused unless its bytes hash to `digest`.

        The temporary name is this process's own, made afresh: `out` is in the blob cache, which
        concurrent builds share, and a name there may be a link to a layout's blob (oci_files.py)."""
        partial_path = out.with_name(f"{out.name}.{os.getpid()}.part")
        sha = hashlib.sha256()
        response = self.request("GET", f"blobs/{digest}", stream=True)
        try:
            if response.status_code != 200:
                raise self.fail(response, f"reading the blob {digest} of")
            partial_path.unlink(missing_ok=True)
            with partial_path.open("xb") as stream:
                for chunk in response.iter_content(CHUNK):
                    sha.update(chunk)
                    stream.write(chunk)
        except OSError as exc:
            raise ExternalError(f"the blob {digest} of {self.reference} could not be saved: {exc.strerror}") from None
        finally:
            response.close()
        if "sha256:" + sha.hexdigest() != digest:
            partial_path.unlink(missing_ok=True)
            raise RegistryMismatch(f"the registry {self.reference.registry} sent a blob that does not match {digest}")
        os.replace(partial_path, out)

    def has_blob(self, digest: str) -> bool:
        return bool(self.request("HEAD", f"blobs/{digest}").status_code == 200)

    def upload_blob(self, data: bytes | Path, digest: str) -> None:
        """POST an upload, PUT the bytes with their digest (the monolithic upload every registry takes)."""
        if self.has_blob(digest):
            return
        started = self.request("POST", "blobs/uploads/", headers={"Content-Length": "0"})
        location = started.headers.get("Location", "")
        if started.status_code != 202 or not location:
            raise self.fail(started, "starting an upload to")
        if not location.startswith(("http://", "https://")):
            location = self.base + location
        location += ("&" if "?" in location else "?") + f"digest={digest}"
        body = data if isinstance(data, bytes) else data.read_bytes()
        put = self.request("PUT", location, data=body, headers={"Content-Type": "application/octet-stream"})
        if put.status_code != 201:
            raise self.fail(put, f"uploading the blob {digest} to")

    def put_manifest(self, target: str, data: bytes, media_type: str) -> dict[str, str]:
        """PUT the exact bytes; returns the response headers (OCI-Subject says the registry files referrers)."""
        response = self.request("PUT", f"manifests/{target}", data=data, headers={"Content-Type": media_type})
        if response.status_code != 201:
            raise self.fail(response, f"storing the manifest {target} in")
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != digest_bytes(data):
            raise ExternalError(f"the registry {self.reference.registry} stored the manifest under {stored}")
        return dict(response.headers)
