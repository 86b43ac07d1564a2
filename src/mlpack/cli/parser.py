"""The argument parser: every command, its flags and help, one place."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlpack import __version__
from mlpack.cli.building import cmd_build
from mlpack.cli.commands import (
    cmd_estimators,
    cmd_experiments,
    cmd_init,
    cmd_inspect,
    cmd_k8s,
    cmd_models,
    cmd_monitor,
    cmd_predict,
    cmd_promote,
    cmd_publish,
    cmd_score,
    cmd_serve,
)
from mlpack.cli.push_command import attachment_argument, cmd_push
from mlpack.cli.verify import add_verify
from mlpack.runtime.cli import SubcommandParser

_BY_ALIAS = "or NAME@ALIAS: the version the registry's alias names"


def _add_alias_lookup(parser: argparse.ArgumentParser) -> None:
    """Where NAME@ALIAS is looked up: the project's registry, and its dist/ (else the registry's store)."""
    parser.add_argument(
        "--config", default=".", help="for NAME@ALIAS: project folder or mlpack.toml naming the registry (default: .)"
    )
    parser.add_argument("--dist", type=Path, help="for NAME@ALIAS: folder holding the builds (default: PROJECT/dist)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 too; keep its usage line, lose nothing
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


class _Subparser(SubcommandParser, _Parser):
    """A command's parser: an unknown flag is named with that command's usage, in `_Parser`'s form."""


def build_parser() -> argparse.ArgumentParser:
    from mlpack.runtime import add_predict_arguments  # shared with the model wheel's own CLI

    parser = _Parser(prog="mlpack", description="MongoDB data to a verified ONNX model, a model wheel and an image.")
    parser.add_argument("--version", action="version", version=f"mlpack {__version__}")
    common = _Subparser(add_help=False)  # a parent only: its flags are copied into each command
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    common.add_argument("-v", "--verbose", action="store_true", help="show progress even when not on a terminal")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Subparser)

    build = commands.add_parser("build", parents=[common], help="train, export, verify and package a model")
    build.add_argument("project", nargs="?", default=".", help="project folder or its mlpack.toml (default: .)")
    build.add_argument("--out", type=Path, help="output folder (default: PROJECT/dist)")
    build.add_argument("--version", dest="version", help="model version, overriding [model].version")
    build.add_argument("--force", action="store_true", help="rebuild a version the registry already holds")
    build.add_argument(
        "--image",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="build the Docker image (default: when the config has [image] and an engine answers)",
    )
    build.set_defaults(handler=cmd_build)

    inspect = commands.add_parser(
        "inspect", parents=[common], help="show the metadata of a .onnx, a model .whl, or an image (tag or archive)"
    )
    inspect.add_argument("artifact", help=f"a .onnx, a model .whl, an image, {_BY_ALIAS}")
    _add_alias_lookup(inspect)
    inspect.set_defaults(handler=cmd_inspect)

    predict = commands.add_parser("predict", parents=[common], help="predict for a JSON Lines, JSON or CSV file")
    predict.add_argument("artifact", help="a .onnx or model .whl built by mlpack")
    add_predict_arguments(predict)
    predict.set_defaults(handler=cmd_predict)

    serve = commands.add_parser("serve", help="serve a .onnx or model .whl over HTTP")
    serve.add_argument("artifact", help=f"a .onnx or model .whl built by mlpack, {_BY_ALIAS}")
    from mlpack.runtime.serving import add_serve_arguments

    add_serve_arguments(serve)
    _add_alias_lookup(serve)
    serve.set_defaults(handler=cmd_serve)

    models = commands.add_parser("models", parents=[common], help="list the builds in the registry")
    models.add_argument("name", nargs="?", help="only this model (default: the project's own)")
    models.add_argument("--config", default=".", help="project folder or mlpack.toml naming the registry (default: .)")
    models.add_argument("--all", action="store_true", help="every model in the project's registry")
    models.add_argument("--history", action="store_true", help="list every alias move instead, oldest first")
    models.set_defaults(handler=cmd_models)

    promote = commands.add_parser(
        "promote", parents=[common], help="point an alias (production, staging...) at a built version"
    )
    promote.add_argument("name", help="the model's name")
    promote.add_argument("version", help="a version the registry holds as built (an earlier one: a rollback)")
    promote.add_argument("--alias", required=True, help="the alias to move: production, staging, or any name")
    promote.add_argument("--reason", default="", help="why, kept in the alias's history")
    promote.add_argument("--config", default=".", help="project folder or mlpack.toml naming the registry (default: .)")
    promote.set_defaults(handler=cmd_promote)

    experiments = commands.add_parser(
        "experiments", parents=[common], help="list the logged trials of cross-validation and search, best first"
    )
    experiments.add_argument("name", nargs="?", help="only this model (default: the project's own)")
    experiments.add_argument("--all", action="store_true", help="the trials of every model in the database")
    experiments.add_argument("--version", dest="version", help="only this version of it")
    experiments.add_argument(
        "--config", default=".", help="project folder or mlpack.toml naming the database (default: .)"
    )
    experiments.set_defaults(handler=cmd_experiments)

    publish = commands.add_parser("publish", parents=[common], help="upload the built wheel and sdist with twine")
    publish.add_argument("project", nargs="?", default=".", help="project folder or its mlpack.toml (default: .)")
    publish.add_argument("--version", dest="version", help="the version to publish (default: [model].version)")
    publish.add_argument("--dist", type=Path, help="folder holding the build (default: PROJECT/dist)")
    target = publish.add_mutually_exclusive_group()
    target.add_argument("--repository-url", help="the package index's upload URL")
    target.add_argument("--repository", help="a repository named in ~/.pypirc")
    publish.set_defaults(handler=cmd_publish)

    push = commands.add_parser(
        "push", parents=[common], help="push the built image (and its SBOM, provenance, signatures) to a registry"
    )
    push.add_argument("artifact", type=Path, help="the image: dist/NAME-VERSION.oci or dist/NAME-VERSION.image.tar")
    push.add_argument("reference", help="HOST[:PORT]/REPOSITORY[:TAG] (no tag: the model's version)")
    push.add_argument(
        "--config", help="project folder or mlpack.toml whose registry records the push (default: ./mlpack.toml)"
    )
    push.add_argument("--ca-file", type=Path, help="PEM file of the CA that signed the registry's certificate")
    push.add_argument("--username", help="registry user (else MLPACK_REGISTRY_USERNAME, else docker's config.json)")
    push.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (else MLPACK_REGISTRY_PASSWORD)"
    )
    push.add_argument(
        "--attach",
        action="append",
        type=attachment_argument,
        metavar="FILE:MEDIA_TYPE[:ARTIFACT_TYPE]",
        help="one more file to attach to the image as an OCI artifact (repeatable)",
    )
    push.add_argument("--plain-http", action="store_true", help="HTTP instead of HTTPS (a loopback registry)")
    push.set_defaults(handler=cmd_push)

    init = commands.add_parser("init", parents=[common], help="scaffold a new model project")
    init.add_argument("name", help="the model's name (also the folder created)")
    init.add_argument("--directory", default=".", help="where to create it (default: .)")
    init.set_defaults(handler=cmd_init)

    monitor = commands.add_parser(
        "monitor", parents=[common], help="drift and live quality of a served model from its inference log"
    )
    monitor.add_argument("project", nargs="?", default=".", help="project folder or its mlpack.toml (default: .)")
    monitor.add_argument("--since", help="start of the window: ISO 8601 time or a duration before now (24h, 7d)")
    monitor.add_argument("--until", help="end of the window (default: now)")
    monitor.add_argument("--threshold", type=float, help="PSI above which to exit 1 ([monitor].threshold, 0.2)")
    monitor.add_argument(
        "--missing-threshold",
        type=float,
        help="exit 1 when a feature's missing rate is above the training one by more than this share "
        "([monitor].missing_threshold, 0.1)",
    )
    monitor.add_argument(
        "--unknown-threshold",
        type=float,
        help="exit 1 when a categorical's share of categories unseen in training is above this "
        "([monitor].unknown_threshold, 0.05)",
    )
    monitor.add_argument("--html", type=Path, help="also write a self-contained HTML report to this file")
    monitor.add_argument("--version", dest="version", help=f"the model version (default: [model].version), {_BY_ALIAS}")
    monitor.add_argument("--dist", type=Path, help="folder holding the build report (default: PROJECT/dist)")
    monitor.add_argument(
        "--model", help=f"read the baseline from this .onnx or model .whl instead of the build report, {_BY_ALIAS}"
    )
    monitor.set_defaults(handler=cmd_monitor)

    score = commands.add_parser(
        "score", parents=[common], help="score a collection with the built wheel into another collection"
    )
    score.add_argument("project", nargs="?", default=".", help="project folder or its mlpack.toml (default: .)")
    score.add_argument("--into", required=True, help="collection (same database) that receives the results")
    score.add_argument("--engine", choices=["local", "spark"], default="local", help="default: local")
    score.add_argument("--master", help="spark: the master URL (default: an active session, else local[*])")
    score.add_argument("--filter", help="only documents matching this MongoDB query (Extended JSON)")
    score.add_argument("--batch-size", type=int, default=1000, help="documents per prediction and write")
    score.add_argument("--partitions", type=int, help="spark: _id ranges (default: 2 per core)")
    score.add_argument(
        "--version", dest="version", help=f"the built version to use (default: [model].version), {_BY_ALIAS}"
    )
    score.add_argument("--dist", type=Path, help="folder holding the build (default: PROJECT/dist)")
    score.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="a document the model cannot read: stop (default) or skip it and report it",
    )
    score.add_argument(
        "--watch",
        action="store_true",
        help="keep scoring inserts and updates as they arrive (a change stream; resumes where it stopped)",
    )
    score.set_defaults(handler=cmd_score)

    kube = commands.add_parser(
        "k8s", parents=[common], help="Kubernetes (or KServe) manifests for the model's image, on stdout"
    )
    kube.add_argument("artifact", help=f"the model .whl or .onnx (its server's memory is measured), {_BY_ALIAS}")
    _add_alias_lookup(kube)
    kube.add_argument("--replicas", type=int, default=2, help="replicas, and the autoscaler's minimum (default: 2)")
    kube.add_argument("--max-replicas", type=int, help="the autoscaler's maximum (default: 4 x --replicas)")
    kube.add_argument("--image", help="the image reference (default: NAME:VERSION, as mlpack build tags it)")
    kube.add_argument("--port", type=int, default=8080, help="the port the image serves on ([image].port)")
    kube.add_argument("--namespace", help="put every object in this namespace")
    kube.add_argument("--kserve", action="store_true", help="a KServe InferenceService (protocol v2) instead")
    kube.set_defaults(handler=cmd_k8s)

    estimators = commands.add_parser("estimators", parents=[common], help="list the supported estimators")
    estimators.set_defaults(handler=cmd_estimators)
    add_verify(commands, common)
    return parser
