"""Volumes: the volume-map grammar, the policy on flags, sources and destinations, and the one
path guard for user-controlled paths.
"""
