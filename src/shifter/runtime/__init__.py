"""The shifter runtime: udiRoot.conf, volumes, mounts, environment, modules, launch."""
