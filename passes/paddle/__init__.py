"""Tools built on the passes, PaddleOCR side: training config edits and CenterLoss centers.

- training configs: :mod:`.config`; progress lines: :mod:`.progress`;
- CenterLoss centers: :mod:`.centers` (the run and the public API), :mod:`.center_model`,
  :mod:`.center_sums`, :mod:`.center_files` (pickle + sidecar), :mod:`.center_shards` (``.npz``, merge).

Export facts, dictionaries, label files and recognition input live in :mod:`ncnnpass.passes.measure`.
"""
