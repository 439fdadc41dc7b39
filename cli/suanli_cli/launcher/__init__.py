"""`suanli up`: runs NATS and every service as supervised child processes in the foreground."""
