"""Layer flattening and image building: OCI layers in, one read-only image file out.

`plan` decides, from tar headers alone, what the flattened tree is; `merge` streams the
layers again to write it; `builders` turn it into squashfs, ext4 or cramfs; `engine` is the
entry point, with atomic output. See docs/flattening.md.
"""

from shifter.convert.builders import ImageBuildError
from shifter.convert.engine import BuildResult, build_image
from shifter.convert.layers import LayerError
from shifter.convert.plan import Plan, PlannedEntry, plan_layers

__all__ = [
    "BuildResult",
    "ImageBuildError",
    "LayerError",
    "Plan",
    "PlannedEntry",
    "build_image",
    "plan_layers",
]
