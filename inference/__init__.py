"""Model code, training, evaluation, export and model clients. Never imports faust."""
