"""CPU time of a server's whole process tree, from /proc (Linux): the server, its worker processes and
their threads. Sampled just before and after a measured window, the difference over the window's wall time
is the server's CPU in cores."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def stat_fields(path: str) -> list[str] | None:
    """Fields 3.. of a /proc stat file (`/proc/<pid>/stat`, `/proc/<pid>/task/<tid>/stat`), after the command
    name, which may hold spaces and parentheses: [0] the state, [1] the parent, [11] utime, [12] stime (ticks).
    None if the process or thread has ended."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _stat(pid: int) -> list[str] | None:
    return stat_fields(f"/proc/{pid}/stat")


def thread_cpu_seconds(pid: int) -> dict[int, tuple[float, float]]:
    """Each live thread of `pid` -> its (user, system) CPU seconds so far."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        if fields := stat_fields(f"/proc/{pid}/task/{tid}/stat"):
            times[int(tid)] = (int(fields[11]) / TICKS, int(fields[12]) / TICKS)
    return times


def tree(root: int) -> list[int]:
    """`root` and every process descending from it."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))  # fields[1]: ppid
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root: int) -> tuple[float, int]:
    """(CPU seconds used so far by the tree, number of processes in it).

    Per process utime + stime, plus cutime + cstime: a child that ended and was reaped inside the window
    moves its time into its parent's c-fields, so the difference of two samples still counts it."""
    total, pids = 0, tree(root)
    for pid in pids:
        fields = _stat(pid)
        if fields:
            total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / TICKS, len(pids)
