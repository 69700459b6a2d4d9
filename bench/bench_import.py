"""Start-up cost: ``import gristmill`` and ``gristmill --help``, against bare Python and pydantic.

    python bench/bench_import.py [--runs 5]

Every measurement is the wall time of a fresh subprocess (median of ``--runs``); the baselines
run in the same invocation, so the ratios hold across machines better than the seconds do.
Prints one JSON object. Targets on the development machine: ``import gristmill`` under
0.15 s of import time, ``gristmill --help`` under 0.3 s of wall time.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path


def gristmill_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("gristmill")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gristmill.cli.main"]


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr}")
    return elapsed


def median_wall_time(command: list[str], runs: int) -> float:
    wall_time(command)  # warm the file-system cache and .pyc files
    return statistics.median(wall_time(command) for _ in range(runs))


def import_time_seconds(module: str) -> float:
    """Cumulative import time of ``module`` as ``-X importtime`` reports it (its last line)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], check=True,
                            capture_output=True, text=True)
    last = result.stderr.strip().splitlines()[-1]
    match = re.match(r"import time:\s*\d+\s*\|\s*(\d+)\s*\|", last)
    return int(match.group(1)) / 1e6 if match else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    python = [sys.executable, "-c"]
    seconds = {
        "python_pass": median_wall_time([*python, "pass"], runs),
        "import_pydantic": median_wall_time([*python, "import pydantic"], runs),
        "import_gristmill": median_wall_time([*python, "import gristmill"], runs),
        "gristmill_help": median_wall_time([*gristmill_command(), "--help"], runs),
    }
    report = {
        "runs": runs,
        "python": sys.version.split()[0],
        "median_wall_seconds": {k: round(v, 4) for k, v in seconds.items()},
        "importtime_cumulative_seconds": {"gristmill": round(median_import_time("gristmill", runs), 4)},
        "ratios": {
            "import_gristmill_over_python_pass": round(seconds["import_gristmill"] / seconds["python_pass"], 2),
            "import_gristmill_over_import_pydantic": round(seconds["import_gristmill"] / seconds["import_pydantic"],
                                                           2),
            "gristmill_help_over_python_pass": round(seconds["gristmill_help"] / seconds["python_pass"], 2),
            "gristmill_help_over_import_pydantic": round(seconds["gristmill_help"] / seconds["import_pydantic"], 2),
        },
    }
    print(json.dumps(report, indent=2))


def median_import_time(module: str, runs: int) -> float:
    return statistics.median(import_time_seconds(module) for _ in range(runs))


if __name__ == "__main__":
    main()
