"""`make bench`: every benchmark, one after another. Figures print with their baselines.

Outside CI the simulator benchmark also runs 1M requests (a few minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    runs = [[str(HERE / "bench_sim.py")] + ([] if os.environ.get("CI") else ["--million"])]
    runs += [[str(p)] for p in sorted(HERE.glob("bench_*.py")) if p.name != "bench_sim.py"]
    failed = 0
    for args in runs:
        print(f"\n=== {Path(args[0]).name} {' '.join(args[1:])}", flush=True)
        failed |= subprocess.run([sys.executable, *args]).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
