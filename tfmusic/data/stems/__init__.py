"""Multitrack stems: taxonomy, dataset layouts, activity labels, splits, preprocessing and tf.data."""
