"""`python -m decision_minrnn.bench` (also the entry of every benchmark subprocess: `--one SPEC_JSON`)."""

import sys

from . import main

sys.exit(main())
