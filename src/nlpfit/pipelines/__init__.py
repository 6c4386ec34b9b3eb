"""transformers Pipeline classes for the tasks whose pipelines transformers 5 removed (question
answering, translation, summarization).  Each module is self-contained (transformers, torch and numpy
only): it is also copied into the model folder and named in its config.json (`custom_pipelines`)."""
