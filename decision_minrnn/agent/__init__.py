"""A trained agent: its folder on disk, the Policy that acts with it, and the stable-baselines3 glue."""
