"""Perceptual image hashes (pHash, dHash) that the image stage, dedup and the audit share."""
