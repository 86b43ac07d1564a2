"""`python -m MODEL predict --input FILE`: the model's own command line."""

import sys

from . import model
from ._runtime import main

sys.exit(main(model, prog=f"python -m {__package__}"))
