"""Applications built on the library: the recipe that trains the embedded default model and the
evaluation of synthetic-world models. They sit beside ``cli.py``, above every library room."""
