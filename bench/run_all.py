"""Run every benchmark script in bench/ in turn (``make bench``); each prints one line per measure.

The figures in docs/benchmarks.md come from these scripts. They take minutes to tens of minutes
on a 2-core CPU (the 8192 x 8192 memory run and the DAS2F scene comparison are the long ones).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
