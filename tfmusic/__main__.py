"""`python -m tfmusic` is the same as the `tfmusic` command."""
import sys

from tfmusic.cli.main import main

sys.exit(main())
