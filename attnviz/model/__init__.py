"""attnviz's own model: the attention formula, the encoder-decoder that calls it, its config,
tokenizer and model files, where it runs, and which model a name means."""
