"""ncnn rewrite passes, one per module; each module defines ``PASS`` (see :mod:`ncnnpass.passes.registry`)."""
