"""Exact and near-duplicate detection, eval-set decontamination and the overlap audit."""
