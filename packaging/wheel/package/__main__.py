"""`python -m MODEL predict --input FILE` and `python -m MODEL serve`: the model's own command line."""

import sys

from . import model
from ._runtime import run_main, serving

sys.exit(run_main(model, prog=f"python -m {__package__}", server=serving))
