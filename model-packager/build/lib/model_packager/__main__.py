import sys

from model_packager.cli import main

sys.exit(main())
