"""BreaKHis data: file names, indexing and validation, image cache, synthetic generator."""
