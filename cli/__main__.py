"""``python -m driftline.cli ...``: the ``driftline`` command without the console script
(how ``driftline up`` starts its children)."""

from __future__ import annotations

import sys

from driftline.cli.main import main

sys.exit(main())
