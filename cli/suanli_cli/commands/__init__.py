"""The API commands of `suanli`, one module per command group."""
