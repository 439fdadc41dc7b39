"""Clients of the services the gateway calls over gRPC; wire messages stop here."""
