"""`python -m decision_minrnn.bench`: the same as `benchmark_agent`."""

import sys

from . import main

sys.exit(main())
