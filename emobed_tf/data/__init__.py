"""Data for training: a data folder as read (``source``), speakers, their statistics and the
cross-validation folds (``speakers``), and the ``tf.data`` pipeline (``pipeline``). Imports
``emobed_tf.records`` and the ground floor."""
