import sys

from sparkkit.cli.main import main

sys.exit(main())
