"""Pull an image from a registry and convert it into the file the runtime mounts.

`pull.pull_and_convert` ties the registry client, the layer cache and the converter
together; `meta` reads and writes the `<id>.meta` file (standard library only: the runtime
reads it on the `shifter` launch path, so nothing heavy is imported here). See
docs/pull-engine.md.
"""
