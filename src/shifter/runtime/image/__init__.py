"""The image on disk: resolving a descriptor to an id (gateway lookup), its metadata and access
check, and mounting it (squashfuse or a loop device).
"""
