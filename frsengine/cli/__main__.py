"""`python -m frsengine.cli ...` (what torchrun launches: torchrun --nproc-per-node N -m frsengine.cli search ...)."""
import sys

from frsengine.cli import main

sys.exit(main())
