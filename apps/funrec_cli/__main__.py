"""``python -m funrec_cli`` runs the ``funrec`` command."""

import sys

from funrec_cli.main import main

sys.exit(main())
