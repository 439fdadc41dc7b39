"""`suanli gpus`: the cluster's GPU inventory by node and type, free and used."""

from __future__ import annotations

from suanli_cli.client import open_client
from suanli_cli.output import JsonFlag, note, print_json, table


def gpus(json_output: JsonFlag = False) -> None:
    """Show the cluster's GPU slots by node and by type, free and used."""
    with open_client() as client:
        inventory = client.get("/api/v1/gpus")
    if json_output:
        print_json(inventory)
        return
    if not inventory["data"]:
        note("no node has reported its GPUs yet (is a trainer agent running?)")
        return
    table(
        ["NODE", "TYPE", "TOTAL", "USED", "FREE", "MEMORY"],
        (
            [
                n["node_id"],
                n["gpu_type"],
                n["total"],
                n["used"],
                n["free"],
                f"{n['memory_mb']} MB" if n["memory_mb"] else "-",
            ]
            for n in inventory["data"]
        ),
        title="By node",
    )
    table(
        ["TYPE", "NODES", "TOTAL", "USED", "FREE"],
        ([t["gpu_type"], t["nodes"], t["total"], t["used"], t["free"]] for t in inventory["by_type"]),
        title="By type",
    )
