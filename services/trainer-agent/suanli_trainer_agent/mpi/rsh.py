"""OpenMPI's rsh agent for an `mpi` job (`rsh <socket> <host> <command...>`, the socket prepended by
the launcher's wrapper script): asks the launcher to run the command on that worker node, writes
its output as its own and exits with its status, as `ssh host command` would."""

from __future__ import annotations

import json
import os
import socket
import sys

from suanli_trainer_agent.mpi.wire import output_bytes


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: rsh <launcher socket> <host> <command...>", file=sys.stderr)
        return 255
    path, host, command = argv[0], argv[1], " ".join(argv[2:])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(path)
        except OSError as exc:
            print(f"suanli rsh: cannot reach the job's launcher: {exc}", file=sys.stderr)
            return 255
        conn.sendall(json.dumps({"op": "exec", "host": host, "command": command}).encode() + b"\n")
        for line in conn.makefile("rb"):
            message = json.loads(line)
            if message.get("op") == "output":
                fd = 2 if message.get("stream") == "stderr" else 1
                os.write(fd, output_bytes(message))
            elif message.get("op") == "exit":
                return int(message.get("code", 255))
    print(f"suanli rsh: the launcher closed the session to {host}", file=sys.stderr)
    return 255
