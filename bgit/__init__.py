"""bgit: git for baked models.

Layers (a lower layer never imports a higher one):

    store  ->  repo  ->  models / config  ->  train / pipeline / evaluate  ->  cli
"""

__version__ = "0.1.0"
