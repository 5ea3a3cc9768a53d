"""Training: stages, optimisation, sharded steps, checkpoints and the loop that ties them."""
