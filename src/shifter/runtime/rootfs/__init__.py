"""Building the container's root filesystem at udiMount: binds, the image's content, /etc,
/dev, volumes, and the signature that marks a finished build.
"""
