"""One-line summaries of a model's metadata, as `build` and `inspect` both print them."""

from __future__ import annotations

from typing import Any


def parity_line(parity: Any) -> str:
    """The parity check in one line; models built before it covered every row say only the figures."""
    rows = f" on {parity['train_rows']} training + {parity['test_rows']} test rows" if "train_rows" in parity else ""
    agreement = f"label agreement {parity['label_agreement']:.2%}"
    return f"parity{rows}: max |sklearn - onnx| {parity['max_abs_diff']:.2g}, {agreement}"


def feedback_line(data: Any) -> str | None:
    """How much of the training data came from the inference log's feedback ([source.feedback]), if any was read."""
    fed = data.get("feedback")
    if not fed:
        return None
    where = f"{fed['database']}.{fed['collection']}"
    if not fed["rows"]:
        return f"feedback: none in {where} from {fed['since'] or 'the start'} to {fed['until'] or 'now'}: no rows added"
    return f"feedback: {fed['rows']} of the {data['rows']} rows from {where} (sha256 {fed['sha256']})"
