"""`mlpack verify`: its arguments → artifacts/verify.py → one line per check, or `--json`."""

from __future__ import annotations

import argparse

from mlpack.cli.commands import _print_json


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
    verify.set_defaults(handler=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from mlpack.artifacts.verify import verify

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
