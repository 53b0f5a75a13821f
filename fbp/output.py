"""The consoles everything prints to. Output piped to a file or CI log gets a wide terminal's width rather
than rich's 80 columns, so per-epoch tables stay readable."""

import sys

from rich.console import Console

console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
