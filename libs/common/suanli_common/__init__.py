"""Shared foundation of Suanli's services: one way to configure, log, trace, store and talk."""
