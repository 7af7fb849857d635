"""`python -m policylayer_core`: the `policylayer` command line."""

from policylayer_core.cli import main

raise SystemExit(main())
