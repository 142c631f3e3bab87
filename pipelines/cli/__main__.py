"""``python -m admlops.pipelines.cli``: torchrun workers of ``admlops train --nproc N`` get their arguments
from the launching command (components/train/train.launch) through ADMLOPS_ARGV."""
import json
import os
import sys

from admlops.pipelines.cli import main

sys.exit(main(json.loads(os.environ.pop("ADMLOPS_ARGV")) if "ADMLOPS_ARGV" in os.environ else None))
