"""Learned audio codecs: a convolutional autoencoder around residual vector quantization."""
