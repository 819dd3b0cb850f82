"""Files on disk: atomic writes, reserved space, thread-safe reads of .npy files."""
