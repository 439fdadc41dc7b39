"""The `suanli` command line: `suanli up` runs the platform; other commands drive its API."""
