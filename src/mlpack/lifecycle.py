"""What happens around builds: listing the registry, publishing with twine, scaffolding projects."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

from mlpack import names
from mlpack.aliases import Aliases
from mlpack.config import Config, ModelSection, load_config
from mlpack.dist import BuildDir, sha256_of
from mlpack.errors import ConfigError, ExternalError
from mlpack.package.wheel import packaging_dir
from mlpack.redaction import remember_uri
from mlpack.registry import HOLDING_STATUSES, Registry
from mlpack.source import connect, mongo_server


@contextmanager
def open_registry(config: Config) -> Iterator[Registry]:
    with mongo_server(config.source) as uri:
        client = connect(uri)
        try:
            yield Registry.for_config(client[config.source.database], config.registry)
        finally:
            client.close()


def list_models(project: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    """The registry's records for the project's database, optionally of one model."""
    config = load_config(project)
    with open_registry(config) as registry:
        rows = registry.list(name)
        if name and not rows:
            known = sorted({row["name"] for row in registry.list()})
            listing = f" (known: {', '.join(known)})" if known else " (the registry is empty)"
            raise ConfigError(f"no model named {name!r} in the registry{listing}")
        if registry.collection is not None:
            named = Aliases(registry).by_version(name)
            for row in rows:
                row["aliases"] = named.get((row["name"], row["version"]), [])
        return rows


def list_experiments(project: str | Path, name: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
    """The logged trials of cross-validation and search, each build's best first."""
    from mlpack.trial_history import list_trials

    config = load_config(project)
    with mongo_server(config.source) as uri:
        client = connect(uri)
        try:
            return list_trials(client[config.source.database][config.registry.experiments], name, version)
        finally:
            client.close()


# -- publish ----------------------------------------------------------------------------------
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


def _built_files(config: Config, version: str, dist: Path) -> tuple[dict[str, Any], list[Path]]:
    builds = BuildDir(dist, config.model.name)
    return builds.report(version), [builds.verified(version, kind) for kind in ("wheel", "sdist")]


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
                held = [r["version"] for r in registry.list(config.model.name) if r.get("status") in HOLDING_STATUSES]
                if not held:
                    raise ConfigError(f"the registry holds no build of {config.model.name}: run `mlpack build` first")
                wanted = held[-1]
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


def _upload(files: list[Path], repository_url: str | None, repository: str | None) -> None:
    command = [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"]
    if repository_url:
        command += ["--repository-url", repository_url]
    elif repository:
        command += ["--repository", repository]
    result = subprocess.run(
        [*command, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
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


# -- init -------------------------------------------------------------------------------------
DISTRIBUTION = "mlpack-onnx"


def _running_mlpack() -> dict[str, str]:
    """How a new project installs the mlpack that scaffolded it: its version from the package
    index when the index has it, else this very installation (PEP 610's direct_url.json says
    where a local or editable install came from), so the printed next step works before any
    release is published."""
    from importlib.metadata import PackageNotFoundError, distribution

    from mlpack import __version__

    local = ""
    try:
        direct = distribution(DISTRIBUTION).read_text("direct_url.json")
    except PackageNotFoundError:  # running from a checkout on sys.path: that checkout is the source
        direct = json.dumps({"url": Path(__file__).resolve().parents[2].as_uri(), "dir_info": {}})
    if direct:
        try:
            url = json.loads(direct).get("url", "")
        except ValueError:
            url = ""
        if url.startswith("file://"):
            local = f"{DISTRIBUTION}[embedded] @ {url}"
    return {"mlpack_version": __version__, "mlpack_local": shlex.quote(local)}  # a shell word in init_setup.sh


def init_project(name: str, parent: str | Path = ".") -> Path:
    """Scaffold a model project from packaging/project; never overwrites anything."""
    problem = names.package_name(name)
    if problem is not None:
        raise ConfigError(f"the model name {name[:80]!r} {problem}")
    target = Path(parent) / name
    if target.exists():
        raise ConfigError(f"{target} already exists: choose another name or folder")
    import_name = ModelSection(name=name, task="classification").import_name
    values = {"name": name, "import_name": import_name, **_running_mlpack()}
    template_root = packaging_dir() / "project"
    staging = target.with_name(f".{name}.mlpack-init")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for source in sorted(template_root.rglob("*")):
            if source.is_dir() or "__pycache__" in source.parts:
                continue
            relative = str(source.relative_to(template_root)).replace("__import__", import_name)
            relative = re.sub(r"(^|/)gitignore\.in$", r"\1.gitignore", relative)
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if relative.endswith(".in"):
                destination = destination.with_suffix("")
                text = Template(source.read_text(encoding="utf-8")).substitute(values)
                destination.write_text(text, encoding="utf-8")
            else:
                shutil.copyfile(source, destination)
            if destination.suffix == ".sh":
                destination.chmod(destination.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
