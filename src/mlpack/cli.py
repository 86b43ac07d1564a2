"""The command line: argument parsing, progress, `--json`, and errors → exit codes. Nothing else."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlpack import __version__
from mlpack.errors import ConfigError, MlpackError
from mlpack.redaction import redact


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 too; keep its usage line, lose nothing
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if args.json or args.quiet:
        return None
    if not (args.verbose or sys.stderr.isatty()):
        return None
    return lambda message: print(redact(f"mlpack: {message}"), file=sys.stderr, flush=True)


def _print_json(document: Any) -> None:
    # Every --json document passes here: a credential that reached one (an error quoting a URI) is hidden.
    print(redact(json.dumps(document, indent=2, sort_keys=True, default=str)))


def cmd_build(args: argparse.Namespace) -> int:
    from mlpack.build import build

    result = build(
        args.project, out=args.out, version=args.version, force=args.force, image=args.image, progress=_progress(args)
    )
    if args.json:
        _print_json(
            {**result.report, "paths": {k: str(p) for k, p in result.artifacts.items()}, "seconds": result.seconds}
        )
    elif not args.quiet:
        metadata = result.metadata
        metrics = ", ".join(f"{name} {value:.4f}" for name, value in metadata["metrics"].items())
        print(f"built {metadata['name']} {metadata['version']} in {result.seconds:.1f} s ({metrics})")
        print(
            f"parity: max |sklearn - onnx| {metadata['parity']['max_abs_diff']:.2g}, "
            f"label agreement {metadata['parity']['label_agreement']:.2%}"
        )
        search, cv = metadata.get("search"), metadata.get("cv")
        if cv:
            scoring = search["scoring"] if search else next(iter(cv["scores"]))
            score = cv["scores"][scoring]
            tried = f"search: {search['trials']} trials, best {json.dumps(search['best_params'])}; " if search else ""
            print(f"{tried}{cv['folds']}-fold CV {scoring} {score['mean']:.4f} ± {score['std']:.4f}")
        for path in result.artifacts.values():
            print(f"  {path}")
        image = result.report.get("image")
        if image and image["built"]:
            print(f"image {image['tag']} ({image['size'] / 2**20:.0f} MiB, {image['id'][:19]})")
        elif image:
            print(f"image not built: {image['reason']}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from mlpack.artifacts import read_any_metadata

    metadata = read_any_metadata(args.artifact)
    if args.json:
        _print_json(metadata)
        return 0
    print(f"{metadata['name']} {metadata['version']}  ({metadata['task']}, created {metadata['created']})")
    print(f"estimator: {metadata['estimator']['class']} {json.dumps(metadata['estimator']['params'], sort_keys=True)}")
    print("features:")
    for feature in metadata["features"]:
        print(f"  {feature['name']:<32} {feature['kind']:<12} input {feature['input']}")
    print(f"target: {metadata['target']}" + (f"  classes: {metadata['classes']}" if "classes" in metadata else ""))
    print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in metadata["metrics"].items()))
    data = metadata["data"]
    where = f"{data['database']}.{data['collection']} filter {json.dumps(data['filter'])}"
    print(f"data: {where}, {data['rows']} rows, sha256 {data['sha256']}")
    parity = metadata["parity"]
    print(f"parity: max |sklearn - onnx| {parity['max_abs_diff']:.2g}, label agreement {parity['label_agreement']:.2%}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in metadata["versions"].items()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mlpack.artifacts import open_model
    from mlpack.runtime import run_predict

    # The model wheel's own `python -m MODEL predict` runs the same function: one behaviour, two doors.
    return run_predict(open_model(args.artifact), args, sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from mlpack._serving import serve_args
    from mlpack.artifacts import open_model

    model = open_model(args.artifact)
    try:
        return serve_args(model, args)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None


def cmd_models(args: argparse.Namespace) -> int:
    from mlpack.lifecycle import list_models

    rows = list_models(args.config, args.name)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no builds recorded" + (f" for {args.name}" if args.name else ""))
        return 0
    header = ("name", "version", "created", "status", "metrics", "wheel sha256")
    table = [header] + [
        (
            row["name"],
            row["version"],
            row["created"],
            row.get("status", "?"),
            ", ".join(f"{k} {v:.3f}" for k, v in list(row.get("metrics", {}).items())[:3]),
            row.get("artifacts", {}).get("wheel", {}).get("sha256", "")[:12],
        )
        for row in rows
    ]
    widths = [max(len(str(cells[i])) for cells in table) for i in range(len(header))]
    for cells in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip())
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    from mlpack.lifecycle import list_experiments

    rows = list_experiments(args.config, args.name, args.version)
    if args.json:
        _print_json([_nan_to_none(row) for row in rows])
        return 0
    if not rows:
        print("no trials logged")
        return 0
    header = ("name", "version", "run", "trial", "status", "score", "mean", "std", "fit s", "params")
    table = [header] + [
        (
            row["name"],
            row["version"],
            row.get("run", ""),
            f"{row['trial']}{'*' if row.get('best') else ''}",
            row["status"],
            row["scoring"],
            _number(row.get("scores", {}).get(row["scoring"], {}).get("mean")),
            _number(row.get("scores", {}).get(row["scoring"], {}).get("std")),
            f"{row.get('fit_seconds', 0):.2f}",
            json.dumps(row["params"], sort_keys=True) if row["params"] else "(configured)",
        )
        for row in rows
    ]
    widths = [max(len(str(cells[i])) for cells in table) for i in range(len(header))]
    for cells in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip())
    print("* the best trial of its build, refit on the whole training split")
    return 0


def _number(value: Any) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def _nan_to_none(value: Any) -> Any:
    """NaN is not JSON; a failed trial's scores print as null."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and value != value else value


def cmd_publish(args: argparse.Namespace) -> int:
    from mlpack.lifecycle import publish

    result = publish(
        args.project,
        version=args.version,
        dist=args.dist,
        repository_url=args.repository_url,
        repository=args.repository,
    )
    if args.json:
        _print_json(
            {
                "name": result.name,
                "version": result.version,
                "files": [str(f) for f in result.files],
                "repository": result.repository,
                "registry_checked": result.registry_checked,
            }
        )
    elif not args.quiet:
        print(f"published {result.name} {result.version} to {result.repository}")
        for path in result.files:
            print(f"  {path.name}")
        if not result.registry_checked:
            print("  (digests checked against the build report; no persistent registry to check against)")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from mlpack.lifecycle import init_project

    target = init_project(args.name, args.directory)
    if not args.quiet:
        print(f"created {target}")
        print(f"next: cd {target} && ./init_setup.sh && .venv/bin/mlpack build")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from mlpack.monitor import monitor, render_text, write_html

    report = monitor(
        args.project,
        since=args.since,
        until=args.until,
        threshold=args.threshold,
        version=args.version,
        dist=args.dist,
        artifact=args.model,
    )
    if args.html:
        write_html(report, args.html)
    if args.json:
        _print_json(report.as_dict())
    elif not args.quiet:
        print(render_text(report))
    if report.records == 0:
        print(f"error: no inference log records of {report.model} {report.version} in the window", file=sys.stderr)
        return 1
    if report.drifted:
        names = ", ".join(row.name for row in report.drifted)
        print(f"error: PSI above {report.threshold:g} for: {names}", file=sys.stderr)
        return 1
    return 0


def cmd_estimators(args: argparse.Namespace) -> int:
    from mlpack.estimators import catalogue

    listing = catalogue()
    if args.json:
        _print_json(listing)
        return 0
    for path, entry in listing["supported"].items():
        notes = [
            *(["scaled inputs"] if entry["scaled"] else []),
            *(["labels only"] if entry["probabilities"] is False else []),
            *(f"{key}={value!r}" for key, value in entry["defaults"].items()),
        ]
        if entry["extra"]:
            installed = "installed" if entry["installed"] else "not installed"
            notes.append(f"needs mlpack-onnx[{entry['extra']}] ({installed})")
        print(f"{path:<50} {entry['task']:<15} {'; '.join(notes)}".rstrip())
    print("\nnot supported (any class not listed above is refused too: only parity-tested estimators are):")
    for path, reason in listing["unsupported"].items():
        print(f"{path:<50} {reason}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from mlpack.score import ScoreRequest, score

    request = ScoreRequest(
        project=args.project,
        into=args.into,
        engine=args.engine,
        master=args.master,
        filter=args.filter,
        batch_size=args.batch_size,
        partitions=args.partitions,
        version=args.version,
        dist=args.dist,
        on_error=args.on_error,
    )
    result = score(request, progress=_progress(args))
    if args.json:
        _print_json(result.summary())
    elif not args.quiet:
        model = result.model
        print(
            f"scored {result.written:,} of {result.matched:,} documents of {result.source} into {result.into} "
            f"with {model['name']} {model['version']} ({args.engine}, {result.seconds:.1f} s, "
            f"{result.documents_per_second:,.0f} documents/s)"
        )
        if result.skipped:
            print(f"skipped {result.skipped} document(s) that could not be scored:")
            for _id, message in result.errors:
                print(f"  _id {_id!r}: {message}")
    return 0


def cmd_k8s(args: argparse.Namespace) -> int:
    from mlpack.deploy.k8s import K8sOptions, k8s, to_yaml

    options = K8sOptions(
        replicas=args.replicas,
        max_replicas=args.max_replicas,
        image=args.image,
        port=args.port,
        namespace=args.namespace,
        kserve=args.kserve,
    )
    documents, footprint = k8s(args.artifact, options)
    if args.json:
        _print_json({"apiVersion": "v1", "kind": "List", "items": documents})
    else:
        sys.stdout.write(to_yaml(documents))
    if not args.quiet:
        print(
            f"mlpack: sized from a measured server: {footprint.rss_bytes / 2**20:.0f} MiB resident, "
            f"{footprint.peak_bytes / 2**20:.0f} MiB peak, model {footprint.model_bytes / 2**20:.1f} MiB",
            file=sys.stderr,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from mlpack.runtime import add_predict_arguments  # shared with the model wheel's own CLI

    parser = _Parser(prog="mlpack", description="MongoDB data to a verified ONNX model, a model wheel and an image.")
    parser.add_argument("--version", action="version", version=f"mlpack {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    common.add_argument("-v", "--verbose", action="store_true", help="show progress even when not on a terminal")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    inspect.add_argument("artifact")
    inspect.set_defaults(handler=cmd_inspect)

    predict = commands.add_parser("predict", parents=[common], help="predict for a JSON Lines, JSON or CSV file")
    predict.add_argument("artifact", help="a .onnx or model .whl built by mlpack")
    add_predict_arguments(predict)
    predict.set_defaults(handler=cmd_predict)

    serve = commands.add_parser("serve", help="serve a .onnx or model .whl over HTTP")
    serve.add_argument("artifact", help="a .onnx or model .whl built by mlpack")
    from mlpack._serving import add_serve_arguments

    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)

    models = commands.add_parser("models", parents=[common], help="list the builds in the registry")
    models.add_argument("name", nargs="?", help="only this model")
    models.add_argument("--config", default=".", help="project folder or mlpack.toml naming the registry (default: .)")
    models.set_defaults(handler=cmd_models)

    experiments = commands.add_parser(
        "experiments", parents=[common], help="list the logged trials of cross-validation and search, best first"
    )
    experiments.add_argument("name", nargs="?", help="only this model")
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
    monitor.add_argument("--threshold", type=float, default=0.2, help="PSI above which to exit 1 (default: 0.2)")
    monitor.add_argument("--html", type=Path, help="also write a self-contained HTML report to this file")
    monitor.add_argument("--version", dest="version", help="the model version (default: [model].version)")
    monitor.add_argument("--dist", type=Path, help="folder holding the build report (default: PROJECT/dist)")
    monitor.add_argument("--model", help="read the baseline from this .onnx or model .whl instead of the build report")
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
    score.add_argument("--version", dest="version", help="the built version to use (default: [model].version)")
    score.add_argument("--dist", type=Path, help="folder holding the build (default: PROJECT/dist)")
    score.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="a document the model cannot read: stop (default) or skip it and report it",
    )
    score.set_defaults(handler=cmd_score)

    kube = commands.add_parser(
        "k8s", parents=[common], help="Kubernetes (or KServe) manifests for the model's image, on stdout"
    )
    kube.add_argument("artifact", help="the model .whl or .onnx (its server's memory is measured)")
    kube.add_argument("--replicas", type=int, default=2, help="replicas, and the autoscaler's minimum (default: 2)")
    kube.add_argument("--max-replicas", type=int, help="the autoscaler's maximum (default: 4 x --replicas)")
    kube.add_argument("--image", help="the image reference (default: NAME:VERSION, as mlpack build tags it)")
    kube.add_argument("--port", type=int, default=8080, help="the port the image serves on ([image].port)")
    kube.add_argument("--namespace", help="put every object in this namespace")
    kube.add_argument("--kserve", action="store_true", help="a KServe InferenceService (protocol v2) instead")
    kube.set_defaults(handler=cmd_k8s)

    estimators = commands.add_parser("estimators", parents=[common], help="list the supported estimators")
    estimators.set_defaults(handler=cmd_estimators)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every `finally` runs: embedded servers stop,
    their temporary folders and the build's scratch folder are removed."""


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    # Libraries warn with text that may quote a connection string: through `redact`, one line, no source.
    print(redact(f"warning: {message}"), file=sys.stderr)


def _quiet_broken_pipe() -> int:
    """The reader went away (`mlpack ... | head`): no traceback, and none at exit when Python flushes."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        try:
            code = _main(argv)
        finally:  # also for argparse's SystemExit (--help, usage): a reader that left shows here, not at exit
            sys.stdout.flush()
        return code
    except BrokenPipeError:  # also from --help or usage output
        return _quiet_broken_pipe()
    finally:
        warnings.showwarning = shown
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except MlpackError as exc:
        if getattr(args, "json", False):
            _print_json({"error": exc.message, "details": exc.details, "exit_code": exc.exit_code})
        print(f"error: {redact(exc.message)}", file=sys.stderr)
        if exc.details:
            print(redact(exc.details), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        return _quiet_broken_pipe()
