"""`mlpack verify`: its arguments → artifacts/verify.py → one line per check, or `--json`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlpack.artifacts import attest
from mlpack.cli.commands import _print_json
from mlpack.cli.push_command import stdin_password
from mlpack.errors import ConfigError


def add_verify(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    verify = commands.add_parser(
        "verify",
        parents=[common],
        help="check an artifact against its build's provenance, SBOM and signatures (exit 1 naming what changed)",
    )
    verify.add_argument(
        "artifact", help="a model .whl, sdist, .onnx, image archive (.image.tar) or OCI layout (.oci/) in its dist/"
    )
    verify.add_argument("--key", help="the signer's PEM public key: also check the signatures ([sign])")
    pulled = verify.add_argument_group("a pushed image (ARTIFACT = HOST[:PORT]/REPOSITORY[:TAG|@DIGEST])")
    pulled.add_argument("--ca-file", type=Path, help="PEM file of the CA that signed the registry's certificate")
    pulled.add_argument("--username", help="registry user (else MLPACK_REGISTRY_USERNAME, else docker's config.json)")
    pulled.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (else MLPACK_REGISTRY_PASSWORD)"
    )
    pulled.add_argument("--plain-http", action="store_true", help="HTTP instead of HTTPS (a loopback registry)")
    verify.set_defaults(handler=cmd_verify)


def _is_reference(text: str) -> bool:
    """A pushed image names its registry (HOST.DOMAIN, HOST:PORT or localhost first): a path that does not
    exist, `dist/x.whl`, is never sent to Docker Hub for want of a registry name."""
    if Path(text).exists() or "/" not in text:
        return False
    host = text.split("/", 1)[0]
    return not host.startswith(".") and ("." in host or ":" in host or host == "localhost")


def _connection(args: argparse.Namespace) -> Any:
    """As `mlpack push` reaches a registry: the CA, plain HTTP, and a login never taken from argv."""
    from mlpack.artifacts.oci_remote import Connection, Credentials

    password = stdin_password(args)
    credentials = Credentials(args.username, password) if password is not None else Credentials.from_env()
    return Connection(ca_file=args.ca_file, plain_http=args.plain_http, credentials=credentials)


def cmd_verify(args: argparse.Namespace) -> int:
    absent = attest.missing(signed=args.key is not None, verifying=True)
    if absent:  # before the imports that would fail on it with a traceback
        raise ConfigError(f"mlpack verify needs the {absent} package, which is not installed: {attest.EXTRA}")
    from mlpack.artifacts.verify import verify, verify_reference

    if _is_reference(args.artifact):
        result = verify_reference(args.artifact, key=args.key, connection=_connection(args))
    else:
        result = verify(args.artifact, key=args.key)
    if args.json:
        _print_json(
            {"artifact": str(result.artifact), "verified": True, "signed": result.signed, "checks": result.checks}
        )
        return 0
    if not args.quiet:
        for line in result.checks:
            print(f"ok  {line}")
        if result.unsigned_note:
            print(f"note: {result.unsigned_note}")
        print(f"verified: {result.artifact.name}" + (" (signatures checked)" if result.signed else ""))
    return 0
