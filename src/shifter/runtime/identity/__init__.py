"""Who runs the container: the user's passwd record and groups, dropping privileges, and the
job's shared user namespace.
"""
