"""``python -m robo_lifelong_cloud train|eval``."""

import sys

from robo_lifelong_cloud.worker import main

sys.exit(main())
