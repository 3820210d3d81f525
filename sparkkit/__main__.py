import sys

from sparkkit.cli.main import entry

sys.exit(entry())
