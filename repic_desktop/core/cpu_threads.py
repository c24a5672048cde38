"""One CPU thread policy for everything that runs torch on the CPU: captioning (CLI and GUI), indexing,
training and serving.

torch's OpenMP pool defaults to one thread per core, and its threads busy-wait between parallel regions.
With any other process on the machine (the GUI, a second `repic` command, a browser) one of those threads
waits for a core the other process holds, and every parallel region waits for it: two demo photos took
over 4 minutes on 2 cores beside one other process, 10-60x slower training was measured the same way
(docs/benchmarks.md). Leaving one core free costs little when the machine is idle and avoids that cliff.
A user's explicit OMP_NUM_THREADS (or a command's --cpu-threads) wins.
"""
from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (affinity and container CPU sets, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def policy_threads(requested: int | None = None) -> int | None:
    """The torch thread count to use: `requested`, else all usable cores but one; None when the user set
    OMP_NUM_THREADS themselves (then torch already follows it)."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"CPU threads must be a whole number of at least 1 (got {requested!r})")
        return requested
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    return max(1, usable_cores() - 1)


def apply_cpu_thread_policy(requested: int | None = None) -> int:
    """Set torch's intra-op threads by the policy; returns the count torch uses afterwards."""
    import torch

    n = policy_threads(requested)
    if n is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()
