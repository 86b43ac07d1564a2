"""The `mlpack init` scaffold's GitHub Actions workflows: actionlint (with shellcheck on every `run:`
script) passes them, and the scheduled retraining's own steps, run in order against a served model's
inference log, rebuild on drift and promote only a challenger that beats the champion."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pymongo import MongoClient

from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess
from tests.helpers.projects import Project

BIN = Path(sys.executable).parent  # the [test] extra's actionlint and shellcheck
SCAFFOLD = Path(__file__).resolve().parent.parent / "packaging" / "project" / ".github" / "workflows"


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("actionlint", path=str(BIN))
    assert tool and shutil.which("shellcheck", path=str(BIN)), "the [test] extra installs actionlint and shellcheck"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # actionlint finds shellcheck
    return subprocess.run([tool, "-no-color", *map(str, files)], capture_output=True, text=True, env=env, timeout=120)


def test_the_scaffolds_workflows_pass_actionlint(tmp_path: Path, run: Any) -> None:
    assert run("init", "fraud-score", "--directory", tmp_path).code == 0
    workflows = sorted((tmp_path / "fraud-score" / ".github" / "workflows").glob("*.yml"))
    assert [path.name for path in workflows] == ["build.yml", "retrain.yml"]
    result = _actionlint(*workflows)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_actionlint_finds_what_would_break_the_retraining(tmp_path: Path) -> None:
    """The check can fail: a step id misspelt, a variable left unquoted, a schedule no cron can keep."""
    text = (SCAFFOLD / "retrain.yml").read_text(encoding="utf-8")
    broken = (
        text.replace("steps.monitor.outputs.drifted != ''", "steps.monitr.outputs.drifted != ''")
        .replace('--since "$SINCE"', "--since $SINCE")
        .replace('cron: "17 5 * * 1"', 'cron: "17 5 * * 8"')
    )
    assert broken.count("monitr") == 1 and "--since $SINCE" in broken and "* * 8" in broken
    (tmp_path / "retrain.yml").write_text(broken, encoding="utf-8")
    result = _actionlint(tmp_path / "retrain.yml")
    assert result.returncode == 1
    assert 'property "monitr" is not defined' in result.stdout
    assert "SC2086" in result.stdout  # shellcheck, through actionlint
    assert 'invalid CRON format "17 5 * * 8"' in result.stdout


# -- the retraining's steps, run as the runner would ----------------------------------------------
# GitHub runs each `run:` with `bash -e {0}`, its outputs read from $GITHUB_OUTPUT; an expression is
# evaluated for `if:` and inside `${{ }}`. Only the forms the workflow uses are understood here
# (`a || b`, `x == 'y'`, `x != 'y'`, always(), names and quoted strings): anything else fails the test.
def _value(text: str, context: dict[str, Any]) -> Any:
    text = text.strip()
    if " || " in text:
        first, rest = text.split(" || ", 1)
        return _value(first, context) or _value(rest, context)
    for operator in (" == ", " != "):
        if operator in text:
            left, right = (_value(side, context) for side in text.split(operator, 1))
            return (str(left or "") == str(right or "")) == (operator == " == ")
    if text == "always()":
        return True
    if re.fullmatch(r"'[^']*'", text):
        return text[1:-1]
    assert re.fullmatch(r"[a-z_]+(\.[A-Za-z_]+)+", text), f"an expression this test cannot evaluate: {text}"
    node: Any = context
    for part in text.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _interpolate(text: str, context: dict[str, Any]) -> str:
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: str(_value(m.group(1), context) or ""), text)


def _run_job(cwd: Path, *, secrets: dict[str, str], inputs: dict[str, Any]) -> dict[str, Any]:
    """The retrain job's `run:` steps in order (not the checkout, setup-python and pip install ones);
    each must succeed. The steps' outputs, and what each step printed."""
    job = yaml.safe_load((SCAFFOLD / "retrain.yml").read_text(encoding="utf-8"))["jobs"]["retrain"]
    context: dict[str, Any] = {"secrets": secrets, "inputs": inputs, "steps": {}}
    job_env = {key: _interpolate(str(value), context) for key, value in job["env"].items()}
    printed: dict[str, str] = {}
    for number, step in enumerate(job["steps"]):
        if "run" not in step or step["run"].startswith("pip install"):
            continue
        name = step.get("id", f"step{number}")
        if "if" in step and not _value(step["if"], context):
            continue
        output, script = cwd / f".{name}.output", cwd / f".{name}.sh"
        output.write_text("", encoding="utf-8")
        script.write_text(step["run"], encoding="utf-8")
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `mlpack` as pip installed it
            **job_env,
            **{key: _interpolate(str(value), context) for key, value in step.get("env", {}).items()},
            "GITHUB_OUTPUT": str(output),
        }
        done = subprocess.run(
            ["bash", "-e", str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"step {name}: {done.stdout}\n{done.stderr}"
        printed[name] = done.stdout + done.stderr
        outputs = dict(line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines() if "=" in line)
        context["steps"][name] = {"outputs": outputs}
    return {"steps": context["steps"], "printed": printed}


STUMP = "params = { n_estimators = 1, max_depth = 1 }"
FOREST = "params = { n_estimators = 30, random_state = 0 }"


def _shifted(n: int) -> list[dict[str, Any]]:
    """Subscribers unlike the training ones: long tenures, nearly all monthly, a new payment method."""
    documents = subscribers(n, seed=98, absent=False)
    for index, document in enumerate(documents):
        document["tenure_months"] = (document["tenure_months"] or 0) + 60
        document["contract"] = "monthly" if index % 10 else "yearly"
        document["billing"]["method"] = "paypal" if index % 3 == 0 else document["billing"]["method"]
    return documents


def _production(run: Any, project: Project) -> str:
    shown = run("inspect", "churn-model@production", "--config", project.path, "--json")
    assert shown.code == 0, shown.err
    return str(json.loads(shown.out)["version"])


def test_the_scheduled_retraining_rebuilds_on_drift_and_promotes_only_a_better_challenger(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    churn_project.edit('version = "1.0.0"', 'version = "auto"')
    churn_project.edit(FOREST, STUMP)  # production is a weak model: one stump
    churn_project.edit("gates = { accuracy = 0.6 }", 'gates = { accuracy = 0.5 }\nchampion = "production"')
    churn_project.edit('champion = "production"', 'champion = "production"\nchampion_margin = 0.01')
    churn_project.write_config(
        churn_project.config.read_text(encoding="utf-8").replace("{", "{{").replace("}", "}}")
        + '\n[serve]\ninference_log_database = "{database}"\n'
    )
    assert run("build", churn_project.path, "-q").code == 0
    assert run("promote", "churn-model", "1.0.0", "--alias", "production", "--config", churn_project.path).code == 0
    wheel = churn_project.path / "dist" / "churn_model-1.0.0-py3-none-any.whl"
    server = ServerProcess.mlpack(wheel, env={"MLPACK_INFERENCE_LOG_URI": churn_project.uri})
    try:
        for start in range(0, 200, 20):
            assert server.request("POST", "/predict", _shifted(200)[start : start + 20]).status == 200
    finally:
        assert server.stop() == 0
    secrets = {"MONGODB_URI": churn_project.uri, "MLPACK_INFERENCE_LOG_URI": churn_project.uri}

    # Monday: production drifted; the forest (now in mlpack.toml) beats the stump: built and promoted.
    churn_project.edit(STUMP, FOREST)
    job = _run_job(churn_project.path, secrets=secrets, inputs={})
    assert set(job["steps"]["monitor"]["outputs"]["drifted"].split(", ")) >= {"contract", "tenure_months"}
    built = job["steps"]["build"]["outputs"]
    assert built["promote"] == "true" and built["version"] == "1.0.1" and built["name"] == "churn-model"
    assert built["reason"].startswith("retrained on drift (") and "vs production 1.0.0" in built["reason"]
    assert _production(run, churn_project) == "1.0.1"
    history = json.loads(run("models", "--history", "--json", "--config", churn_project.path).out)
    assert history[-1]["to"] == "1.0.1" and history[-1]["reason"] == built["reason"]

    # The next Monday: nothing logged for 1.0.1 yet, so no drift: nothing built.
    churn_project.edit(FOREST, STUMP)  # (a worse model in mlpack.toml: it must never reach production)
    job = _run_job(churn_project.path, secrets=secrets, inputs={})
    assert job["steps"]["monitor"]["outputs"]["drifted"] == "" and "build" not in job["steps"]
    assert "no inference log records of production" in job["printed"]["monitor"]

    # Rebuilt by hand (workflow_dispatch): the stump does not beat the forest; refused, recorded, not promoted.
    job = _run_job(churn_project.path, secrets=secrets, inputs={"rebuild": True, "since": "7d"})
    assert job["steps"]["build"]["outputs"] == {"promote": "false"}
    assert "::notice::not promoted: error: champion gate: accuracy" in job["printed"]["build"]
    assert _production(run, churn_project) == "1.0.1"
    record = mongo_client[churn_project.database]["mlpack_models"].find_one({"version": "1.0.2"})
    assert record["status"] == "rejected" and "production (1.0.1)" in record["reason"]
