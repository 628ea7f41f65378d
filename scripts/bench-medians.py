#!/usr/bin/env python3
"""Prints the median of every numeric figure of the benchmark's JSON lines,
with the runs, per workload × backend (× build, × fair, for lines that name
one)."""
import json
import statistics
import sys
from collections import defaultdict

runs = defaultdict(list)
for line in open(sys.argv[1]):
    d = json.loads(line)
    key = (d["workload"], d["backend"]) + ((d["build"],) if "build" in d else ())
    key += (f"fair={d['fair']}",) if "fair" in d else ()
    runs[key].append(d)
for key, ds in sorted(runs.items()):
    print(f"{' '.join(key)} ({len(ds)} runs): median of each figure, then the runs")
    keys = [k for k, v in ds[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for k in keys:
        vals = [d[k] for d in ds if isinstance(d.get(k), (int, float))]
        if vals:
            print(f"  {k:<28} {statistics.median(vals):>12g}   {', '.join(f'{v:g}' for v in vals)}")
