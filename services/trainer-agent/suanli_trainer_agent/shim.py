"""The leader of a job's process group: `python -m suanli_trainer_agent.shim CMD...`.

It makes a job die with its agent. The kernel sends it SIGTERM when the agent dies (even by
kill -9, through PR_SET_PDEATHSIG), and it then stops the whole group: TERM, and KILL after
the grace period. Without it, a job's grandchildren (torchrun's workers) would outlive a killed
agent and run beside the attempt the scheduler starts elsewhere.

Once stopping, it lives until every descendant is gone: its direct child is often `/bin/sh -c`,
which dies at the TERM at once, while the process under it (a fine-tune runner finishing its
step) takes its time; were the shim to exit with the shell, the KILL would never come.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _stop_group(grace: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        # Set before the TERM: what the dying shell leaves behind becomes the shim's to wait for.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
    os.killpg(0, signal.SIGTERM)
    timer = threading.Timer(grace, lambda: os.killpg(0, signal.SIGKILL))
    timer.daemon = True
    timer.start()


def main() -> None:
    argv = sys.argv[1:]
    grace = float(os.environ.get("SUANLI_STOP_GRACE_S", "10"))
    agent_pid = int(os.environ.get("SUANLI_AGENT_PID", "0"))
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if agent_pid and os.getppid() != agent_pid:  # the agent died before prctl took effect
        sys.exit(143)

    stopping = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        _stop_group(grace)

    signal.signal(signal.SIGTERM, on_term)
    child = subprocess.Popen(argv)
    code = child.wait()
    if stopping.is_set():
        _wait_for_descendants()  # ended by the grace period's KILL if they outlast it
    sys.exit(code if code >= 0 else 128 - code)


def _wait_for_descendants() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


if __name__ == "__main__":
    main()
