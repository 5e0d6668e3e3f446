"""``python -m linkserver.kernel``: run the default (Mathics3) kernel process."""

from .mathics import main

raise SystemExit(main())
