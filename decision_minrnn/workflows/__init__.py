"""What the commands do end to end, above data, behaviour and rollout: choosing a data source, training then scoring."""
