"""Differential fuzzer for the rewrite passes: random pass sequences over real and generated ncnn graphs,
judged by the IR checks and by ncnn fp32 outputs against the unmodified model (see :mod:`.run`)."""
