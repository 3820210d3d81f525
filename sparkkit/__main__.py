import sys

from sparkkit.cli import main

sys.exit(main())
