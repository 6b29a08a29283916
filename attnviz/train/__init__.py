"""Teaching a model and measuring it: tasks, batches, the training loop, evaluation.

``loop`` trains (``attnviz train``), ``evaluate`` measures (``attnviz eval``); ``tasks``
generates the data the shipped models learn from, ``pairs`` reads a person's own.
"""
