"""AnnData / MuData to arrays: validation, preprocessing recipes, minibatch sources, dataset registry."""
