"""Suanli trainer agent: runs the scheduler's jobs on one node."""
