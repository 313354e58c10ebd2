"""Preparing site libraries for injection into containers (`shifter-prep-libs`): ELF
headers read in Python, dependencies resolved as ld.so would, RPATHs set with patchelf."""
