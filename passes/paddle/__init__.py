"""Tools built on the passes, PaddleOCR side: config edits, export files, recognition input, CTC, centers.

- export facts: :mod:`.export_config` (the one parser of ``inference.yml`` / ``config.json``),
  :mod:`.dictionary`; training configs: :mod:`.config`;
- recognition input and output: :mod:`.label_files`, :mod:`.rec_preprocess`, :mod:`.image_loading`,
  :mod:`.ctc_decode`, :mod:`.progress`;
- CenterLoss centers: :mod:`.centers` (the run and the public API), :mod:`.center_model`,
  :mod:`.center_sums`, :mod:`.center_files` (pickle + sidecar), :mod:`.center_shards` (``.npz``, merge).
"""
