"""Tools of the coolchic kind: evaluation (fitting is encoding, so there is no training or export)."""
