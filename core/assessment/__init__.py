"""Assessment: confusion-matrix metrics, ``evaluate`` against a reference, the training reports,
the per-pixel random-forest baseline printed beside the network, and the validation of a
network during training (``validation``)."""
