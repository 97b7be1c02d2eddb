"""The encoder stacks of EmoBed: :class:`GRUStack` (sequences) and :class:`DenseStack`
(frame-wise dense layers, then a masked mean), and :func:`make_stack` to pick one."""

import keras
from keras import ops

from emobed_tf import configs


def _is_prefix(mask) -> bool:
    """Whether each row of a [B, T] mask is ``True`` up to its length and ``False`` after
    (evaluated eagerly: torch only)."""
    lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
    prefix = ops.arange(ops.shape(mask)[1], dtype="int32")[None, :] < lengths[:, None]
    return bool(ops.all(ops.equal(ops.cast(mask, "bool"), prefix)))


def _carry_last(seq, mask):
    """``seq`` [B, T, D] with each row's last valid step repeated over its padding (what
    Keras' masked RNN loop gives), for a prefix ``mask``; an empty row becomes zeros."""
    lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
    steps = ops.arange(ops.shape(seq)[1], dtype="int32")
    index = ops.minimum(steps[None, :], ops.maximum(lengths - 1, 0)[:, None])[..., None]
    out = ops.take_along_axis(seq, ops.broadcast_to(index, ops.shape(seq)), axis=1)
    return out * ops.cast(lengths > 0, seq.dtype)[:, None, None]


@keras.saving.register_keras_serializable(package="emobed_tf")
class GRUStack(keras.layers.Layer):
    """A stack of GRU layers that honours a [B, T] mask.

    Args:
        units: units per layer.
        num_layers: number of GRU layers.
        return_sequences: whether the last layer returns the whole sequence
            (earlier layers always do).
        dropout: input dropout of every layer.

    Example:

    >>> import numpy as np
    >>> stack = GRUStack(8, 2)
    >>> tuple(stack(np.zeros((2, 5, 3), "float32")).shape)
    (2, 5, 8)
    """

    def __init__(self, units=120, num_layers=2, return_sequences=True, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.units = units
        self.num_layers = num_layers
        self.return_sequences = return_sequences
        self.dropout = dropout
        self.supports_masking = True
        # Every layer returns its sequence; without return_sequences the stack
        # gives each row's last valid output (see call).
        self.grus = [
            keras.layers.GRU(units, return_sequences=True, dropout=dropout, name=f"gru_{i}",
                             dtype=self.dtype_policy)
            for i in range(num_layers)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for gru in self.grus:
            gru.build(shape)
            shape = shape[:2] + (self.units,)
        self.built = True

    def call(self, x, mask=None, training=None):
        if mask is not None and keras.backend.backend() == "torch" and _is_prefix(mask):
            x = self._right_padded(x, mask, training)
        else:
            for gru in self.grus:
                x = gru(x, mask=mask, training=training)
        if self.return_sequences:
            return x
        # each row's last valid output: on a GPU, TensorFlow's cuDNN GRU leaves
        # zeros (not the carried output) at padded steps
        return (x if mask is None else _carry_last(x, mask))[:, -1]

    def _right_padded(self, x, mask, training):
        """The masked stack's outputs, computed without a mask (torch, prefix masks).

        With a mask that is a prefix of each row (the pipeline and the serving
        signature pad at the end only), the unmasked GRU's output at a valid
        step equals the masked one's, and a padded step of the masked GRU
        repeats the last valid output: a gather gives the same tensor.
        Keras' torch GRU takes cuDNN on a GPU only without a mask; with one
        it runs a generic per-step loop with masking ops. On 2 CPU cores the
        RECOLA-size step (2 + 2 layers, 300-frame windows) takes 0.4-0.5x
        the time this way (``benchmarks/results/backends.md``).
        """
        for gru in self.grus:
            x = _carry_last(gru(x, training=training), mask)
        return x

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return tuple(input_shape[:2]) + (self.units,)
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_layers": self.num_layers,
                "return_sequences": self.return_sequences, "dropout": self.dropout}


ENCODER_TYPES = ("dense", "gru")


DENSE_ACTIVATIONS = configs.DENSE_ACTIVATIONS


@keras.saving.register_keras_serializable(package="emobed_tf")
class DenseStack(keras.layers.Layer):
    """A stack of Dense layers (input dropout, then Dense), the form for pooled features.

    Frame-wise on [B, T, D] inputs, so it keeps a [B, T] mask like
    :class:`GRUStack`. Without ``return_sequences`` the stack first takes
    the mean over each row's valid frames (the masked mean; with one frame,
    that frame) and returns [B, units]: the shared network of a
    classification model sees exactly the pooled embedding the triplet loss
    uses.

    Args:
        units: units per layer.
        num_layers: number of Dense layers.
        return_sequences: frame-wise output [B, T, units], else the pooled [B, units].
        dropout: dropout on each layer's input.
        activation: activation of every layer.

    Example:

    >>> import numpy as np
    >>> stack = DenseStack(8, 2, return_sequences=False)
    >>> tuple(stack(np.zeros((2, 5, 3), "float32")).shape)
    (2, 8)
    """

    def __init__(self, units=120, num_layers=1, return_sequences=True, dropout=0.0,
                 activation="relu", **kwargs):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if activation not in DENSE_ACTIVATIONS:
            raise ValueError(f"activation must be one of {DENSE_ACTIVATIONS}, got {activation!r}")
        self.units = units
        self.num_layers = num_layers
        self.return_sequences = return_sequences
        self.dropout = dropout
        self.activation = activation
        self.supports_masking = True
        self.denses = [keras.layers.Dense(units, activation=activation, name=f"dense_{i}",
                                          dtype=self.dtype_policy)
                       for i in range(num_layers)]
        self.drop = keras.layers.Dropout(dropout, dtype=self.dtype_policy) if dropout else None

    def build(self, input_shape):
        dim = input_shape[-1]
        for dense in self.denses:
            dense.build((None, dim))
            dim = self.units
        self.built = True

    def call(self, x, mask=None, training=None):
        if not self.return_sequences:
            x = _masked_mean(x, mask) if mask is not None else ops.mean(x, axis=1)
        for dense in self.denses:
            if self.drop is not None:
                x = self.drop(x, training=training)
            x = dense(x)
        return x

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return tuple(input_shape[:-1]) + (self.units,)
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_layers": self.num_layers,
                "return_sequences": self.return_sequences, "dropout": self.dropout,
                "activation": self.activation}


def make_stack(encoder_type, units, num_layers, return_sequences, dropout, activation="relu",
               name=None):
    """A :class:`GRUStack` or a :class:`DenseStack` (``encoder_type`` ``gru``/``dense``)."""
    if encoder_type == "gru":
        return GRUStack(units, num_layers, return_sequences, dropout, name=name)
    if encoder_type == "dense":
        return DenseStack(units, num_layers, return_sequences, dropout, activation, name=name)
    raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {encoder_type!r}")


def _masked_mean(x, mask):
    w = ops.expand_dims(ops.cast(mask, x.dtype), -1)
    return ops.sum(x * w, axis=1) / ops.maximum(ops.sum(w, axis=1), 1.0)
