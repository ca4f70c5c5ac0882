"""Acting in gymnasium environments: the one rollout loop (env factory, seeds, episode quota), evaluation, video."""
