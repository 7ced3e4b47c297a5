"""Fuzzers for the ``.param`` parser, the ``.bin`` loader and the pattern parser; see :mod:`tests.fuzz.run`."""
