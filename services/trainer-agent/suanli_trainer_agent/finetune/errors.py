"""The runner's one domain error: a run that cannot go on for a reason the user can act on."""

from __future__ import annotations


class FineTuneError(Exception):
    """Its message is shown to the user as the job's failure reason (the last stderr line)."""
