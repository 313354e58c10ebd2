"""Images as users and registries name them: image references, the `.meta` file, OCI models.

`shifter.image.descriptor` parses what `shifter --image`, `SHIFTER_IMAGE*` and `shifterimg`
take (`TYPE:SPEC`); `shifter.image.reference` parses docker references and maps them to
gateway locations. This package imports only the leaves, and the reference modules only the
standard library, because `shifter` imports them on its launch path.
"""
