"""Learned image codecs: models, training, bitstreams, evaluation."""
