"""khabar training: turn a YAML config into a trained topic classifier or summarizer directory.

Example:
    >>> from training.config import load_config
    >>> load_config("configs/classifier/tiny.yaml").task
    'classification'
"""
