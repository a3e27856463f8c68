"""Assessment: confusion-matrix metrics, ``evaluate`` against a reference, the training reports,
and the per-pixel random-forest baseline printed beside the network."""
