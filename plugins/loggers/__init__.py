"""Built-in loggers (TensorBoard, Weights & Biases): each registers by module string, and imports its package only when a run starts."""
