import sys

from agenttrail.cli import main

sys.exit(main())
