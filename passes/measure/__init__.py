"""The measurement core: what a model is and what it is fed, how its outputs are judged.

- model facts: :mod:`.export_config` (the one parser of ``inference.yml`` / ``config.json``),
  :mod:`.model_info` (kind, input shape, dictionary of a source), :mod:`.dictionary`;
- data: :mod:`.label_files`, :mod:`.image_loading`, :mod:`.rec_preprocess`;
- task decoding: :mod:`.ctc_decode`.

It sits below the pass engine and the tools (precision, compare, paddle, toolchain) and imports only
the IR and its runtime.
"""
