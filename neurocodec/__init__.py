"""neurocodec: learned codecs with real entropy-coded bitstreams."""
__version__ = "0.1.0"
