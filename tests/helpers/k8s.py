"""The manifests `mlpack k8s` prints, parsed."""

from __future__ import annotations

import json
from typing import Any


def k8s_documents(run, *args: Any) -> list[dict[str, Any]]:
    result = run("k8s", *args, "--json")
    assert result.code == 0, result.err
    listing = json.loads(result.out)
    assert listing["kind"] == "List"
    return list(listing["items"])
