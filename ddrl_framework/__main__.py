import sys

from ddrl_framework.cli import main

sys.exit(main())
