"""`make bench`: every benchmark, one after another. Figures print with their baselines.

`make bench-full` (``--full``) also runs the simulator on 1M requests (about 4 minutes on 2
cores). Each benchmark prints its rows as they finish.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    full = "--full" in argv
    runs = [[str(HERE / "bench_sim.py")] + (["--million"] if full else [])]
    runs += [[str(p)] for p in sorted(HERE.glob("bench_*.py")) if p.name != "bench_sim.py"]
    if not full:
        print("(the 1M-request simulator case runs with `make bench-full`)", flush=True)
    failed = 0
    for i, args in enumerate(runs, 1):
        print(f"\n=== [{i}/{len(runs)}] {Path(args[0]).name} {' '.join(args[1:])}", flush=True)
        failed |= subprocess.run([sys.executable, "-u", *args]).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
