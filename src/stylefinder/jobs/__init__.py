"""Writers' jobs: build an index from a catalog folder, annotate its items, tune its space."""
