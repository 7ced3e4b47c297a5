"""PaddleOCR-side tools: config edits, recognition preprocessing, CTC decoding and character centers."""
