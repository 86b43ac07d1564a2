"""`mlpack push`: its flags' meaning (credentials from the environment or stdin, never argv) and output."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlpack.cli.commands import _print_json
from mlpack.errors import ConfigError


def attachment_argument(value: str) -> tuple[Path, str, str]:
    """FILE:MEDIA_TYPE[:ARTIFACT_TYPE] (a media type has a '/' and no ':', so a file name may hold ':')."""
    parts = value.rsplit(":", 2)
    if len(parts) == 3 and "/" in parts[1] and "/" in parts[2]:
        return Path(parts[0]), parts[1], parts[2]
    path, _, media_type = value.rpartition(":")
    if not path or "/" not in media_type:
        raise argparse.ArgumentTypeError(f"{value!r} is not FILE:MEDIA_TYPE[:ARTIFACT_TYPE]")
    return Path(path), media_type, media_type


def stdin_password(args: argparse.Namespace) -> str | None:
    """--password-stdin's password (with --username), or None without the flag: never from argv."""
    if not args.password_stdin:
        return None
    if not args.username:
        raise ConfigError("--password-stdin needs --username")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ConfigError("--password-stdin: no password on standard input")
    return password


def cmd_push(args: argparse.Namespace) -> int:
    from mlpack.artifacts.oci_push import Attachment
    from mlpack.push import default_attachments, push

    password = stdin_password(args)
    attachments = None
    if args.attach:
        extra = [Attachment(path, media_type, artifact_type) for path, media_type, artifact_type in args.attach]
        attachments = default_attachments(args.artifact) + extra
    pushed = push(
        args.artifact,
        args.reference,
        attachments=attachments,
        project=args.config,
        ca_file=args.ca_file,
        username=args.username if password is not None else None,
        password=password,
        plain_http=args.plain_http,
    )
    result = pushed.result
    if args.json:
        _print_json(
            {
                "name": pushed.name,
                "version": pushed.version,
                "reference": result.reference,
                "digest": result.digest,
                "attachments": result.attachments,
                "referrers": result.referrers,
                "recorded": pushed.recorded,
            }
        )
    elif args.quiet:
        print(result.digest)
    else:
        print(f"pushed {result.reference}@{result.digest}")
        for attached in result.attachments:
            print(f"  attached {attached['file']} ({attached['artifact_type']}) {attached['digest']}")
        print(f"  recorded in {pushed.recorded}" if "." in pushed.recorded else f"  not recorded: {pushed.recorded}")
    return 0
