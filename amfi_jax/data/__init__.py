"""Data path: raw-file readers, preprocessing, synthetic NTU-format data and input pipelines."""
