"""`mlpack publish`: upload one built version's wheel and sdist with twine, after checking their digests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlpack.artifacts.dist import BuildDir, BuildReport, sha256_of
from mlpack.config import Config, load_config
from mlpack.errors import ConfigError, ExternalError
from mlpack.redaction import child_environment, remember_uri
from mlpack.registry import HOLDING_STATUSES, RegistryRecord, open_registry


@dataclass(frozen=True)
class PublishResult:
    name: str
    version: str
    files: list[Path]
    repository: str
    registry_checked: bool


def _registry_is_throwaway(config: Config) -> bool:
    """An embedded server lives for one build only, so its registry cannot vouch for anything later."""
    return config.source.embedded and not os.environ.get(config.source.uri_env, "").strip()


def _built_files(config: Config, version: str, dist: Path) -> tuple[BuildReport, list[Path]]:
    builds = BuildDir(dist, config.model.name)
    return builds.report(version), [builds.verified(version, kind) for kind in ("wheel", "sdist")]


def _newest_here(name: str, records: list[RegistryRecord], dist: Path) -> str:
    """`auto`: the newest build in this dist/ whose report the registry vouches for (a held status, the
    same wheel and sdist digests). The registry is shared with every other checkout of the project, so
    its newest build may have been made elsewhere and be absent here, or be another build of the same
    version number: publishing takes what this folder built."""
    held = {r["version"]: r for r in records if r.get("status") in HOLDING_STATUSES}
    if not held:
        raise ConfigError(f"the registry holds no build of {name}: run `mlpack build` first")
    builds = BuildDir(dist, name)
    for version in reversed(builds.versions()):
        record = held.get(version)
        if record is None:
            continue
        written = builds.report(version).get("artifacts", {})
        if all(
            written.get(kind, {}).get("sha256") == record.get("artifacts", {}).get(kind, {}).get("sha256")
            for kind in ("wheel", "sdist")
        ):
            return version
    raise ConfigError(
        f"none of the registry's builds of {name} is in {dist} (its newest, {list(held)[-1]}, was built "
        "elsewhere): run `mlpack build` here, or name one: --version, --dist"
    )


def publish(
    project: str | Path = ".",
    *,
    version: str | None = None,
    dist: str | Path | None = None,
    repository_url: str | None = None,
    repository: str | None = None,
) -> PublishResult:
    """Upload the wheel and sdist of one built version with twine, after checking their digests."""
    config = load_config(project)
    dist_dir = Path(dist) if dist else config.project_dir / "dist"
    wanted = version or config.model.version
    throwaway = _registry_is_throwaway(config) or not config.registry.enabled
    if wanted == "auto" and throwaway:
        raise ConfigError('version "auto" needs a persistent registry to know which build to publish: pass --version')

    target = remember_uri(repository_url or repository or "pypi")  # for messages and the registry
    registry_checked = False
    if throwaway:
        report, files = _built_files(config, wanted, dist_dir)
        _upload(files, repository_url, repository)
    else:
        with open_registry(config) as registry:
            if wanted == "auto":
                wanted = _newest_here(config.model.name, registry.list(config.model.name), dist_dir)
            report, files = _built_files(config, wanted, dist_dir)
            record = registry.find(config.model.name, wanted)
            if record is None or record.get("status") not in HOLDING_STATUSES:
                raise ConfigError(f"{config.model.name} {wanted} is not a successful build in the registry")
            if record.get("status") == "published":
                where = record.get("published", {})
                raise ConfigError(
                    f"{config.model.name} {wanted} was already published to {where.get('repository', '?')} "
                    f"at {where.get('at', '?')}: build and publish a new version"
                )
            for kind, path in zip(("wheel", "sdist"), files):
                if record["artifacts"][kind]["sha256"] != sha256_of(path):
                    raise ConfigError(
                        f"{path.name} differs from the build recorded in the registry (sha256): "
                        "refusing to publish a file the registry does not vouch for"
                    )
            registry_checked = True
            _upload(files, repository_url, repository)
            registry.mark(
                config.model.name,
                wanted,
                status="published",
                published={
                    "at": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "repository": target,
                },
            )
    return PublishResult(
        config.model.name,
        report["version"],
        files,
        target,
        registry_checked,
    )


def _login_apart(url: str) -> tuple[str, dict[str, str]]:
    """The index's URL without a login in it, and that login as twine's variables: a child's argv is
    readable by every user of the machine (ps, /proc), its environment only by its owner."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    host = parts.netloc.rpartition("@")[2]
    login = {"TWINE_USERNAME": urllib.parse.unquote(parts.username or "")}
    if parts.password is not None:
        login["TWINE_PASSWORD"] = urllib.parse.unquote(parts.password)
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), login


def _upload(files: list[Path], repository_url: str | None, repository: str | None) -> None:
    command = [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"]
    login: dict[str, str] = {}
    if repository_url:
        url, login = _login_apart(repository_url)
        command += ["--repository-url", url]
    elif repository:
        command += ["--repository", repository]
    result = subprocess.run(
        [*command, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        # The environment less the variables holding secrets mlpack read ([source].uri_env, [sign]'s): twine
        # and its keyring backends need the index's login (TWINE_*), not the database's or the signing key.
        env=child_environment({"PYTHONWARNINGS": "ignore", **login}),
    )
    if result.returncode == 0:
        return
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr).strip()
    target = remember_uri(repository_url or repository or "pypi")
    if re.search(r"\b(401|403)\b", output):
        raise ExternalError(
            f"the package index {target} refused the credentials (set TWINE_USERNAME/TWINE_PASSWORD "
            "or a ~/.pypirc entry)"
        )
    if re.search(r"\b409\b|already exists", output, re.IGNORECASE):
        raise ExternalError(f"the package index {target} already has this version: publish a new one")
    if re.search(r"connection|max retries|name or service|timed out", output, re.IGNORECASE):
        raise ExternalError(f"the package index {target} is unreachable")
    if re.search(r"\b400\b", output):
        raise ExternalError(
            f"the package index {target} rejected the upload (400 Bad Request; "
            "an index answers so when the version exists already)",
            details=output[-2000:],
        )
    if "is not defined in the config" in output or "Missing '" in output:
        raise ConfigError(f"repository {repository!r} is not configured in ~/.pypirc")
    raise ExternalError(f"twine upload to {target} failed", details=output[-2000:])
