"""Pure JAX building blocks: layers, augmentations, losses, training loop, graph helpers.

Nothing in this package knows about AnnData; everything works on arrays.
"""
