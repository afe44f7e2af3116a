"""`python -m cdpsandbox`: start the sandbox server."""

from __future__ import annotations

import logging
import sys

from cdpsandbox.config import load_config
from cdpsandbox.server import serve


def main() -> int:
    """Parse options, configure logging to stderr and serve until SIGTERM."""
    config = load_config()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
