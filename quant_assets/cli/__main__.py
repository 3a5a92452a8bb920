"""`python -m quant_assets.cli ...` is `quant-assets ...`."""

import sys

from quant_assets.cli.main import main

sys.exit(main())
