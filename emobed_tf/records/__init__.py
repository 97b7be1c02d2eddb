"""TFRecord data on disk: the record schema and its checks (``schema``), the data folder's
manifest (``manifest``), the writer (``writer``) and the one graph record parser, which also
translates TensorFlow's data errors into DataError (``parse``). Imports only the ground floor
(``emobed_tf.errors``, ``io``, ``configs``)."""
