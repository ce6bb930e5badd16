"""Stage ``image``: size checks on the original image, perceptual hashes of the stored one."""
