"""The ``segdial`` command-line entry point (the composition root of the three packages)."""
