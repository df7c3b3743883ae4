import sys

from probgen.cli import main

sys.exit(main())
