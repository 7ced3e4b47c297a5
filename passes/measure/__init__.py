"""The measurement core: what a model is and what it is fed, how its outputs are judged.

- model facts: :mod:`.export_config` (the one parser of ``inference.yml`` / ``config.json``),
  :mod:`.model_info` (kind, input shape, dictionary of a source), :mod:`.dictionary`;
- data: :mod:`.samples` (samples with provenance, data sets), :mod:`.image_sources` (``--images``: a folder,
  a rec or a det label file), :mod:`.synth` (built-in lines and pages), :mod:`.split` (calibration /
  held-out), :mod:`.label_coverage`; :mod:`.label_files` and :mod:`.image_loading` (the center export's
  label files and loading);
- model input exactly as PaddleOCR's inference makes it: :mod:`.prepare` (per kind), :mod:`.rec_preprocess`,
  :mod:`.det_preprocess`, :mod:`.crops`, :mod:`.model_input`;
- task decoding and metrics: :mod:`.ctc_decode`, :mod:`.metrics` (rec, det, cls);
- verification: :mod:`.verify` (before/after a rewrite), :mod:`.paths` (a file with featmasks on every ncnn path).

It sits below the pass engine and the tools (precision, compare, paddle, toolchain) and imports only the IR
and its runtime, numpy, OpenCV, Pillow, pyclipper and the standard library (PyYAML and onnx lazily, for
model facts).
"""
