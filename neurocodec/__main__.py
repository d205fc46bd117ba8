import sys

from neurocodec.cli import main

sys.exit(main())
