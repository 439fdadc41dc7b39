"""`python -m suanli_trainer_agent.mpi launch|worker|rsh ...`: the processes of an `mpi` job."""

from __future__ import annotations

import argparse
import asyncio
import sys

from suanli_trainer_agent.mpi import rsh, wire
from suanli_trainer_agent.mpi.launcher import Launcher, LaunchOptions
from suanli_trainer_agent.mpi.wire import say
from suanli_trainer_agent.mpi.worker import Worker, WorkerOptions, environment


def main(argv: list[str]) -> int:
    if argv[:1] == ["rsh"]:  # called by mpirun with OpenMPI's own arguments: no parsing
        return rsh.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m suanli_trainer_agent.mpi")
    parts = parser.add_subparsers(dest="role", required=True)
    launch = parts.add_parser("launch", help="node rank 0: run mpirun over the job's nodes")
    launch.add_argument("--nnodes", type=int, required=True)
    launch.add_argument("--slots", type=int, required=True)
    launch.add_argument("--master-port", type=int, required=True)
    launch.add_argument("--join-timeout", type=float, default=900.0)
    launch.add_argument("command")
    worker = parts.add_parser("worker", help="node rank > 0: run mpirun's daemons for the launcher")
    worker.add_argument("--node-rank", type=int, required=True)
    worker.add_argument("--master-addr", required=True)
    worker.add_argument("--master-port", type=int, required=True)
    worker.add_argument("--join-timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    env, token = environment()
    if not token:
        say(f"mpi job: no {wire.TOKEN_ENV} in the environment (the agent gives it to mpi jobs)")
        return 2
    if args.role == "launch":
        options = LaunchOptions(
            args.command, args.nnodes, args.slots, args.master_port, token, args.join_timeout, env
        )
        return asyncio.run(Launcher(options).run())
    return asyncio.run(
        Worker(
            WorkerOptions(args.node_rank, args.master_addr, args.master_port, token, args.join_timeout, env)
        ).run()
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
