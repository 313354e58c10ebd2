"""What the user asked for: the image, volumes and modules (command line, then environment),
and the command and working directory.
"""
