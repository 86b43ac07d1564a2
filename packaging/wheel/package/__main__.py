"""`python -m MODEL predict --input FILE` and `python -m MODEL serve`: the model's own command line."""

import csv
import os
import sys

from . import _serving, model
from ._runtime import main


def _run() -> int:
    try:
        code = main(model, prog=f"python -m {__package__}", server=_serving)
        sys.stdout.flush()  # inside the try: a reader that left (`| head`) shows here at the latest
        return code
    except BrokenPipeError:
        # The reader went away: end quietly, and keep Python's own flush at exit quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RecursionError:
        print("error: the input is nested too deeply to be records", file=sys.stderr)
        return 2
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
        print(f"error: the input is not a readable CSV file: {exc}", file=sys.stderr)
        return 2


sys.exit(_run())
