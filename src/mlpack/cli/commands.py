"""Each command: its arguments → the work → what it prints (a table, `--json`, progress)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from mlpack.cli.lines import feedback_line, parity_line
from mlpack.redaction import redact


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if args.json or args.quiet:
        return None
    if not (args.verbose or sys.stderr.isatty()):
        return None
    return lambda message: print(redact(f"mlpack: {message}"), file=sys.stderr, flush=True)


def _warnings(args: argparse.Namespace) -> Callable[[str], None]:
    """mlpack's warnings: always on stderr (CI logs too, a service's journal, beside --json's stdout), unless -q."""
    if args.quiet:
        return lambda _message: None
    return lambda message: print(redact(f"mlpack: warning: {message}"), file=sys.stderr, flush=True)


def _print_json(document: Any) -> None:
    # Every --json document passes here: a credential that reached one (an error quoting a URI) is hidden.
    print(redact(json.dumps(document, indent=2, sort_keys=True, default=str)))


def _artifact(args: argparse.Namespace) -> str:
    """The command's artifact: as given, or NAME@ALIAS resolved through the registry to a verified file."""
    from mlpack.registry.aliases import artifact_path

    return artifact_path(args.artifact, project=args.config, dist=args.dist)


def cmd_inspect(args: argparse.Namespace) -> int:
    from mlpack.artifacts.read import read_any_metadata

    metadata = read_any_metadata(_artifact(args))
    if args.json:
        _print_json(metadata)
        return 0
    print(f"{metadata['name']} {metadata['version']}  ({metadata['task']}, created {metadata['created']})")
    print(f"estimator: {metadata['estimator']['class']} {json.dumps(metadata['estimator']['params'], sort_keys=True)}")
    print("features:")
    for feature in metadata["features"]:
        print(f"  {feature['name']:<32} {feature['kind']:<12} input {feature['input']}")
    for derived in metadata.get("derived", []):  # computed in the graph from the inputs above
        print(f"  {derived['name']:<32} {'derived':<12} = {derived['expression']}")
    print(f"target: {metadata['target']}" + (f"  classes: {metadata['classes']}" if "classes" in metadata else ""))
    print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in metadata["metrics"].items()))
    data = metadata["data"]
    where = f"{data['database']}.{data['collection']} filter {json.dumps(data['filter'])}"
    print(f"data: {where}, {data['rows']} rows, sha256 {data['sha256']}")
    if feedback_line(data):
        print(feedback_line(data))
    print(parity_line(metadata["parity"]))
    print("versions: " + ", ".join(f"{k} {v}" for k, v in metadata["versions"].items()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mlpack.artifacts.read import open_model
    from mlpack.runtime import run_predict

    # The model wheel's own `python -m MODEL predict` runs the same function: one behaviour, two doors.
    return run_predict(open_model(args.artifact), args, sys.stderr, prog="mlpack")


def cmd_serve(args: argparse.Namespace) -> int:
    from mlpack.artifacts.read import open_model
    from mlpack.runtime.serving import serve_args

    # The wheel's own `python -m MODEL serve` is the same call: settings, their errors, exit codes.
    return serve_args(open_model(_artifact(args)), args)


def cmd_models(args: argparse.Namespace) -> int:
    from mlpack.listing import list_models

    if args.history:
        return _print_history(args)
    rows = list_models(args.config, args.name, every=args.all)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no builds recorded" + (f" for {args.name}" if args.name else ""))
        return 0
    header = ("name", "version", "created", "status", "aliases", "metrics", "wheel sha256")
    table = [header] + [
        (
            row["name"],
            row["version"],
            row["created"],
            row.get("status", "?"),
            ",".join(row.get("aliases", [])),
            ", ".join(f"{k} {v:.3f}" for k, v in list(row.get("metrics", {}).items())[:3]),
            row.get("artifacts", {}).get("wheel", {}).get("sha256", "")[:12],
        )
        for row in rows
    ]
    _print_table(table)
    return 0


# What a table cell shows escaped: line breaks and other control characters, and the invisible marks that
# reorder or hide text. The registry is shared, and what anyone wrote into it (a reason, a name) is printed
# on others' terminals: a line break split a row, an escape sequence would reach the terminal itself.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def _cell(value: Any) -> str:
    return _UNPRINTABLE.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), str(value))


def _print_table(table: list[tuple[Any, ...]]) -> None:
    rows = [[_cell(cell) for cell in cells] for cells in table]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    for cells in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())


def _print_history(args: argparse.Namespace) -> int:
    from mlpack.registry.aliases import history

    moves = history(args.config, args.name)
    if args.json:
        _print_json(moves)
    elif not moves:
        print("no alias moves recorded" + (f" for {args.name}" if args.name else ""))
    else:
        header = ("when", "name", "alias", "from", "to", "who", "reason")
        _print_table(
            [header]
            + [(m["when"], m["name"], m["alias"], m["from"] or "-", m["to"], m["who"], m["reason"]) for m in moves]
        )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from mlpack.registry.aliases import promote

    move = promote(args.config, args.name, args.version, args.alias, reason=args.reason)
    if args.json:
        _print_json(
            {"name": args.name, "alias": args.alias, "version": args.version, "moved": move is not None, "move": move}
        )
    elif not args.quiet:
        if move is None:
            print(f"{args.name}@{args.alias} is already {args.version}")
        else:
            print(f"{args.name}@{args.alias}: {move['from'] or '(new)'} -> {move['to']}")
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    from mlpack.listing import list_experiments

    rows = list_experiments(args.config, args.name, args.version, every=args.all)
    if args.json:
        _print_json([_nan_to_none(row) for row in rows])
        return 0
    if not rows:
        print("no trials logged (a build logs them with [evaluation].cv or a [search] table)")
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
    from mlpack.publish import publish

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
    from mlpack.scaffold import init_project

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
        missing_threshold=args.missing_threshold,
        unknown_threshold=args.unknown_threshold,
    )
    if args.html:
        write_html(report, args.html)
    if args.json:
        _print_json(report.as_dict())
    elif not args.quiet:
        print(render_text(report))
    if report.records == 0:
        # Without --version or --model it is the project's version (its newest build), which need not be the one served.
        hint = (
            ""
            if args.version or args.model
            else " (the project's version; the one an alias serves: --version @production)"
        )
        print(
            f"error: no inference log records of {report.model} {report.version} in the window{hint}", file=sys.stderr
        )
        return 1
    for problem in report.problems():  # PSI, a missing-rate jump, unknown categories
        print(f"error: {problem}", file=sys.stderr)
    return 1 if report.problems() else 0


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
            *(["fits in float32 with float32 = true"] if entry["float32"] else []),
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
    from mlpack.scoring.command import ScoreRequest, score

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
    if args.watch:
        return _watch(args, request)
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
            from mlpack.scoring.worker import describe_errors  # as a failed run lists them: `_id "..."`

            print(f"skipped {result.skipped} document(s) that could not be scored:")
            print(describe_errors(result.errors))
    return 0


def _watch(args: argparse.Namespace, request: Any) -> int:
    from mlpack.scoring.watch import watch

    result = watch(request, progress=_progress(args), warn=_warnings(args))
    if args.json:
        _print_json(result.summary())
    elif not args.quiet:
        model = result.model
        first = f"resumed from the token in {result.state}" if result.resumed else f"{result.initial:,} at the start"
        print(
            f"watched {result.source} for {result.seconds:.1f} s with {model['name']} {model['version']}: "
            f"{result.events:,} change events in {result.batches:,} batches, {result.written:,} results written "
            f"into {result.into} ({first}), {result.skipped} skipped"
        )
    return 0


def cmd_k8s(args: argparse.Namespace) -> int:
    from mlpack.deploy.k8s import K8sOptions, k8s, secrets_read, to_yaml

    options = K8sOptions(
        replicas=args.replicas,
        max_replicas=args.max_replicas,
        image=args.image,
        port=args.port,
        namespace=args.namespace,
        kserve=args.kserve,
    )
    documents, footprint, warnings = k8s(_artifact(args), options)
    for warning in warnings:
        _warnings(args)(warning)
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
        for variable, name in secrets_read(documents):  # the inference log's connection string
            print(
                f"mlpack: the model's [serve].inference_log is on: its pods read {variable} from the Secret {name} "
                f"(key uri), and do not start without it: kubectl create secret generic {name} "
                "--from-literal=uri='mongodb://...'",
                file=sys.stderr,
            )
    return 0
