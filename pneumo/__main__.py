import sys

from pneumo.cli import main

sys.exit(main())
