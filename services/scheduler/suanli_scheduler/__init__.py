"""Suanli scheduler: jobs, the GPU slot ledger, placement and leases."""
