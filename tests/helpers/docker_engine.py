"""A real Docker engine for the image tests: the one DOCKER_HOST names, or Debian's docker.io
started here (no engine runs on these machines by default), with a local Python base image.

Slow parts are cached between runs under ~/.cache/mlpack-tests/docker (MLPACK_TEST_CACHE):
the unpacked engine and the base image, shared; each test process's (pytest-xdist worker's) engine
has its own data root there, so that built layers are reused.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlpack.runtime.lifetime import parent_death_signal

BASE_IMAGE = "python:3.11-slim"
PACKAGES = ("docker.io", "containerd", "runc", "tini")


class EngineUnavailable(Exception):
    pass


def cache_dir() -> Path:
    root = Path(os.environ.get("MLPACK_TEST_CACHE", Path.home() / ".cache" / "mlpack-tests")) / "docker"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _run(
    command: list[str | Path], env: dict[str, str] | None = None, timeout: float = 600, **kwargs
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
        **kwargs,
    )


def _answers(env: dict[str, str]) -> bool:
    docker = shutil.which("docker", path=env.get("PATH"))
    if docker is None:
        return False
    try:
        return _run([docker, "version", "--format", "{{.Server.Version}}"], env, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _unpack_engine(root: Path) -> Path:
    """Debian's engine, unpacked (not installed): apt-get download + dpkg-deb -x."""
    unpacked = root / "root"
    if (unpacked / "usr" / "sbin" / "dockerd").is_file():
        return unpacked
    debs = root / "debs"
    debs.mkdir(exist_ok=True)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise EngineUnavailable("no apt-get/dpkg-deb to fetch Debian's docker.io")
    fetched = _run(["apt-get", "download", *PACKAGES], cwd=debs)
    if fetched.returncode != 0:
        _run(["apt-get", "update", "-qq"])
        fetched = _run(["apt-get", "download", *PACKAGES], cwd=debs)
        if fetched.returncode != 0:
            raise EngineUnavailable(f"apt-get download failed: {fetched.stderr[-500:]}")
    staging = root / "root.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", deb, staging]).check_returncode()
    staging.rename(unpacked)
    return unpacked


@contextmanager
def _preparing(root: Path) -> Iterator[None]:
    """One test process at a time unpacks the engine and makes the base tarball (pytest-xdist's workers
    each start an engine, and on a fresh machine would otherwise write the same files at once)."""
    with (root / "prepare.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _engine_root(root: Path) -> Path:
    """This test process's own engine: its data root (built layers kept between runs), exec root, socket,
    pidfile and log. Two workers' engines never share one, nor stop each other's as stale."""
    own = root / f"engine-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    own.mkdir(exist_ok=True)
    return own


def _stop_stale(pidfile: Path) -> None:
    if not pidfile.is_file():
        return
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
    except (ValueError, ProcessLookupError, PermissionError):
        pass
    pidfile.unlink(missing_ok=True)


def _ensure_base_image(env: dict[str, str], root: Path) -> None:
    if _run(["docker", "image", "inspect", BASE_IMAGE], env).returncode == 0:
        return
    if _run(["docker", "pull", BASE_IMAGE], env, timeout=300).returncode == 0:
        return  # a registry answers (a developer's laptop, GitHub's runners)
    tarball = root / "base.tar"
    if not tarball.is_file():
        if shutil.which("mmdebstrap") is None:
            installed = _run(["apt-get", "install", "-y", "-qq", "mmdebstrap"])
            if installed.returncode != 0:
                raise EngineUnavailable(f"mmdebstrap is not installed and could not be: {installed.stderr[-300:]}")
        partial = root / "base.tar.partial"
        made = _run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--include=python3,python3-venv",
                "--format=tar",
                "bookworm",
                partial,
                "/etc/apt/sources.list.d/debian.sources",
            ],
            stdin=subprocess.DEVNULL,
            timeout=900,
        )
        if made.returncode != 0:
            raise EngineUnavailable(f"mmdebstrap failed: {made.stderr[-500:]}")
        partial.rename(tarball)
    imported = _run(["docker", "import", tarball, BASE_IMAGE], env)
    if imported.returncode != 0:
        raise EngineUnavailable(f"docker import failed: {imported.stderr[-300:]}")


@contextmanager
def docker_engine() -> Iterator[dict[str, str]]:
    """Environment variables (DOCKER_HOST, PATH) that reach a working engine holding BASE_IMAGE."""
    if _answers(dict(os.environ)):  # DOCKER_HOST, or the default socket, already reaches an engine
        env = {"PATH": os.environ["PATH"]}
        if "DOCKER_HOST" in os.environ:
            env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        _ensure_base_image({**os.environ, **env}, cache_dir())
        yield env
        return
    root = cache_dir()
    with _preparing(root):
        unpacked = _unpack_engine(root)
    own = _engine_root(root)
    bins = f"{unpacked / 'usr' / 'bin'}{os.pathsep}{unpacked / 'usr' / 'sbin'}"
    env = {"PATH": f"{bins}{os.pathsep}{os.environ['PATH']}", "DOCKER_HOST": f"unix://{own / 'docker.sock'}"}
    pidfile = own / "dockerd.pid"
    _stop_stale(pidfile)
    (own / "data").mkdir(exist_ok=True)
    log = (own / "dockerd.log").open("wb")
    daemon = subprocess.Popen(
        [
            "dockerd",
            "--data-root",
            str(own / "data"),
            "--exec-root",
            str(own / "exec"),
            "-H",
            env["DOCKER_HOST"],
            "--pidfile",
            str(pidfile),
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--storage-driver=overlay2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
        preexec_fn=parent_death_signal(signal.SIGTERM),  # a crashed test worker leaves no engine running
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers({**os.environ, **env}):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise EngineUnavailable(f"dockerd did not start: {(own / 'dockerd.log').read_text()[-800:]}")
            time.sleep(0.3)
        with _preparing(root):
            _ensure_base_image({**os.environ, **env}, root)
        yield env
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
