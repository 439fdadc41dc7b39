"""`mpi` jobs: node rank 0 runs `mpirun` over a hostfile of the job's nodes, and the other nodes
run a worker that starts mpirun's daemons (orted) for it, reached through the job's own rendezvous
port instead of ssh (what Kubeflow's MPIJob does with `kubectl exec` as OpenMPI's rsh agent)."""
