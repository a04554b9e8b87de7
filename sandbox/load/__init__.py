"""`sandbox load`: a bounded fortio-like HTTP load client (plan -> runner -> stats -> report).

plan.py validates and caps what a run may do, runner.py carries it out on asyncio (client.py is
its HTTP/1.1 connection), stats.py and report.py turn the calls into fortio's histogram,
percentiles and per-code counts, as text or JSON. Everything but runner/client is pure.
"""

from __future__ import annotations

from sandbox.load.plan import LoadPlan, PlanError, parse_duration, parse_header
from sandbox.load.stats import LoadResult

__all__ = ["LoadPlan", "LoadResult", "PlanError", "parse_duration", "parse_header"]
