"""Rewrite passes on the ncnn IR, one per module; each module defines ``PASS``
(see :mod:`ncnnpass.passes.registry`)."""
