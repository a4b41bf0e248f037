"""`python -m keras_transfer.cli`: the same as the `keras-transfer` script."""

import sys

from keras_transfer.cli import main

sys.exit(main())
