import os
import sys

from probgen.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # One process of a torchrun launch: leave without interpreter finalization (see
    # probgen.vae.distributed.exit_process).
    from probgen.vae.distributed import exit_process

    exit_process(code)
sys.exit(code)
