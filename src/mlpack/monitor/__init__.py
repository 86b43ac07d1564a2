"""`mlpack monitor`: drift and live quality of a served model, from its inference log in MongoDB.

The server logs each answered request (`inputs` as sent, `predictions`, `at`, `model`, `version`;
see the server's InferenceLog). This module reads the log of one model version over a time window,
reads every logged record the way the model read it (the runtime's own `feeds`: the same canonical
categories and missing values), and compares the distribution of each feature and of the predictions
with the training baseline stored in the model's metadata, by PSI (mlpack.runtime.drift, the same bins the
server's /metrics uses). Where clients sent the true outcome (`POST /feedback`), it also computes
the model's live metrics on those records.
"""

from __future__ import annotations

from mlpack.monitor.analysis import Report, analyse, monitor
from mlpack.monitor.render import render_html, render_text, write_html
from mlpack.times import Window, parse_time

__all__ = ["Report", "Window", "analyse", "monitor", "parse_time", "render_html", "render_text", "write_html"]
