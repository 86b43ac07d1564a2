"""An unknown flag of a command is named with that command's usage (exit 2), not the top-level one.

argparse hands a subcommand's leftovers back to the top parser, which printed `usage: mlpack [-h]
[--version] {build,inspect,...}` for `mlpack build --bogus`: the user learnt nothing of build's flags.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from mlpack.cli import main as cli_main
from mlpack.cli.parser import build_parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _required(command: argparse.ArgumentParser) -> list[str]:
    """Values for what the command requires, so that the unknown flag is what it stops at."""
    argv: list[str] = []
    for action in command._actions:
        value = str(next(iter(action.choices))) if action.choices else "x"
        if not action.option_strings and action.nargs not in ("?", "*"):
            argv.append(value)
        elif action.option_strings and action.required:
            argv += [action.option_strings[0], value]
    return argv


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[str]:
    with pytest.raises(SystemExit) as exited:
        cli_main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    return captured.err.strip().splitlines()


@pytest.mark.parametrize("name", list(_commands(build_parser())))
def test_every_command_names_an_unknown_flag_with_its_own_usage(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = _commands(build_parser())[name]
    lines = _usage_error(capsys, [name, *_required(command), "--bogus"])
    assert lines[0].startswith(f"usage: mlpack {name} "), lines
    assert lines[-1] == "error: unrecognized arguments: --bogus", lines


def test_a_near_miss_is_suggested_and_a_stray_value_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _usage_error(capsys, ["build", "--forse"])
    assert lines[0].startswith("usage: mlpack build ")
    assert lines[-1] == "error: unrecognized arguments: --forse (did you mean --force?)"
    lines = _usage_error(capsys, ["build", "one", "two"])
    assert lines[0].startswith("usage: mlpack build ") and lines[-1] == "error: unrecognized arguments: two"
    # Before a command, a flag is the top level's: its usage lists the commands.
    lines = _usage_error(capsys, ["--bogus", "build"])
    assert lines[0].startswith("usage: mlpack [-h]") and lines[-1] == "error: unrecognized arguments: --bogus"


def test_the_wheels_own_cli_names_it_with_the_commands_usage(
    built_model: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlpack.artifacts.read import open_model
    from mlpack.runtime import main

    model = open_model(built_model.artifacts["onnx"])
    with pytest.raises(SystemExit) as exited:
        main(model, ["predict", "--input", "in.jsonl", "--strikt"], prog="python -m test_model")
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("usage: python -m test_model predict ")
    assert lines[-1].endswith("error: unrecognized arguments: --strikt (did you mean --strict?)")
