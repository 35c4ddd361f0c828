"""Training: the loop, the optimiser, ray sampling, language supervision, provenance."""
