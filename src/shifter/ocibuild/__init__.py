"""Building OCI images from scratch and pushing them to a registry.

`layer` writes deterministic tar layers from a declarative description, `image` wraps them
in configs, manifests and indexes (OCI or Docker schema 2), `push` sends them through the
registry HTTP API, and `catalog` names the test images with the one outcome a correct pull
and flatten must give (`baseimage`: the busybox base and the outcome values; `hostile`: the
hostile images and the tar bomb). Used by the tests and the demo.
"""
