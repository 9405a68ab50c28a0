import sys

from omics_cl.cli import main

sys.exit(main())
