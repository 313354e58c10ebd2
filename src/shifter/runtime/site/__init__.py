"""What the site adds to a container: the environment, modules and their hooks, and GPUs (site
keys or a CDI spec).
"""
