"""What the bench scripts share: the repository root, the shared COVID-CT data, the lungsweep command.

Cheap to import (pathlib and sys only): a script's --help stays fast.
"""
from __future__ import annotations

import sys
from pathlib import Path

# the repository root: runs/, configs/ and search/sweeps/ are found from here, and commands run in it
ROOT = Path(__file__).resolve().parents[1]
# the COVID-CT training images, shared beside the checkout (../shared)
DATA = ROOT.parent / "shared" / "datasets" / "covid-ct-qsr" / "train"
# the same, as a --data default relative to the repository root: "../shared/datasets/covid-ct-qsr/train"
DATA_FROM_ROOT = f"../{DATA.relative_to(ROOT.parent).as_posix()}"
# the command line of this interpreter's lungsweep, for the benches that run it as a user would
LUNGSWEEP = [sys.executable, "-m", "lungsweep"]
