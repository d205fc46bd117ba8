"""The image kind's tools: training, export, evaluation (commands.py is what the CLI calls)."""
