"""The coolchic kind: an overfitted image codec (Cool-chic / C3 style). codec.py is the kind
class (no torch), loaded.py its implementation; decoding (decoder.py, format.py) needs numpy and
the C++ core only; fitting (fit.py) needs torch."""
