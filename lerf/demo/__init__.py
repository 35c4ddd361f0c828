"""The measuring instrument: the synthetic demo scene, its shapes and capture noise, the reference
encoders, the oracle and part_fit. The core imports this package only in the factories that pick
it by config (the scene loader, the encoder factory); `.importlinter` holds that contract."""
