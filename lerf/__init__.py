"""Language Embedded Radiance Fields in plain PyTorch."""
