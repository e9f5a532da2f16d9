import sys

from hfc_edu.cli import main

sys.exit(main())
