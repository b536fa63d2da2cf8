"""Run a command, report wall time and the peak RSS of the command (not of this wrapper)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
elapsed = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(
    json.dumps(
        {
            "seconds": elapsed,
            "peak_mib": peak_kib / 1024,
            "rc": done.returncode,
            "stderr": done.stderr.decode(errors="replace")[-500:],
        }
    )
)
