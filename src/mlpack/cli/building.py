"""`mlpack build`: its arguments → build.py → the summary lines (or `--json`), progress and warnings on stderr."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

from mlpack.cli.commands import _print_json, _progress, _warnings
from mlpack.cli.lines import feedback_line, parity_line
from mlpack.errors import ConfigError
from mlpack.runtime.settings import mongodb_uri_problem

if TYPE_CHECKING:
    from mlpack.config import Config


def _refuse_a_string_that_is_no_uri(config: Config) -> None:
    """The check `source.connect` makes, before the build's imports too: `MONGODB_URI=notauri` is one
    line at once, not after the seconds scikit-learn and skl2onnx take to load."""
    variables = [config.source.uri_env]
    feedback = config.source.feedback
    if feedback is not None and feedback.enabled and feedback.uri_env:
        variables.append(feedback.uri_env)
    for variable in variables:
        uri = os.environ.get(variable, "").strip()
        problem = mongodb_uri_problem(uri, variable) if uri else ""
        if problem:
            raise ConfigError(problem)


def cmd_build(args: argparse.Namespace) -> int:
    from mlpack.config import load_config

    # A mistake in mlpack.toml is one line at once: the build's own imports (scikit-learn, skl2onnx,
    # onnx: seconds) wait until the configuration is known to read. build() reads it again (cheap).
    _refuse_a_string_that_is_no_uri(load_config(args.project))
    from mlpack.build import build

    result = build(
        args.project,
        out=args.out,
        version=args.version,
        force=args.force,
        image=args.image,
        progress=_progress(args),
        warn=_warnings(args),
    )
    if args.json:
        _print_json(
            {**result.report, "paths": {k: str(p) for k, p in result.artifacts.items()}, "seconds": result.seconds}
        )
    elif not args.quiet:
        metadata = result.metadata
        metrics = ", ".join(f"{name} {value:.4f}" for name, value in metadata["metrics"].items())
        weighted = metadata.get("evaluation", {}).get("weighted_by")
        metrics += f"; weighted by {weighted}" if weighted else ""
        print(f"built {metadata['name']} {metadata['version']} in {result.seconds:.1f} s ({metrics})")
        if feedback_line(metadata["data"]):
            print(feedback_line(metadata["data"]))
        if result.report.get("champion"):
            from mlpack.training.champion import summary

            print(summary(result.report["champion"]))
        print(parity_line(metadata["parity"]))
        search, cv = metadata.get("search"), metadata.get("cv")
        if cv:
            scoring = search["scoring"] if search else next(iter(cv["scores"]))
            score = cv["scores"][scoring]
            failed = f" ({search['failed']} failed)" if search and search["failed"] else ""
            tried = (
                f"search: {search['trials']} trials{failed}, best {json.dumps(search['best_params'])}; "
                if search
                else ""
            )
            print(f"{tried}{cv['folds']}-fold CV {scoring} {score['mean']:.4f} ± {score['std']:.4f}")
        for path in result.artifacts.values():
            print(f"  {path}")
        image = result.report.get("image")
        if image and image["built"]:
            print(f"image {image['tag']} ({image['size'] / 2**20:.0f} MiB, {image['id'][:19]})")
        elif image:
            print(f"image not built: {image['reason']}")
    return 0
