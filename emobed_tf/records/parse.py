"""The one graph record parser, and TensorFlow's data errors translated into DataError.

Every record goes through :func:`parse_batch`, which applies
``schema.RECORD_CHECKS`` to a batch of records in the graph; a failed check
stops the pipeline with an error that starts with ``schema.BAD_RECORD`` and
names the shard, the recording and the problem. :func:`data_error_from`
turns such a ``tf.data`` failure (and corrupt files) into a
:class:`~emobed_tf.records.schema.DataError`; :func:`verify_shards` reads
shards eagerly, record by record, to name a bad file.
"""

from __future__ import annotations

import ast
import codecs
import os
import re
import string
from typing import Mapping, Sequence

import numpy as np  # noqa: F401  (the doctests use it)

from emobed_tf.records import schema
from emobed_tf.records.schema import DataError


def _plain(fn):
    """``fn`` for ``tf.data`` as written, without AutoGraph's source conversion.

    The dataset functions here hold no Python control flow over tensors
    (``tf.cond`` where a branch is needed), so converting them only costs
    time: about 0.1-0.3 s per function and pipeline, paid by every run.
    """
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(fn)


def _graph_message(template: str, values: Mapping, row):
    """``template.format(**values)`` in the graph, for the record at ``row``."""
    import tensorflow as tf

    pieces = []
    for literal, name, _, _ in string.Formatter().parse(template):
        pieces.append(literal)
        if name:
            v = values[name]
            if isinstance(v, tf.Tensor):
                v = v[row] if v.shape.rank else v
                v = v if v.dtype == tf.string else tf.strings.as_string(v)
            pieces.append(v if isinstance(v, tf.Tensor) else str(v))
    return tf.strings.join(pieces)


def _assert_records(facts: Mapping, expected: schema.Expected, recordings, paths):
    """One ``tf.debugging.Assert`` of ``schema.RECORD_CHECKS`` over a batch.

    Fails with ``schema.RECORD_MESSAGE`` for the first failing record and
    its first failing check; the message is only built on failure.
    """
    import tensorflow as tf

    checks = [c for c in schema.RECORD_CHECKS if c.applies(expected)]
    n = tf.shape(recordings)[0]
    oks = tf.stack([tf.broadcast_to(c.ok(facts, expected), [n]) for c in checks])  # [C, B]
    all_ok = tf.reduce_all(oks)
    values = {**expected.fields(), **facts}

    def message():
        row = tf.argmin(tf.cast(tf.reduce_all(oks, axis=0), tf.int32), output_type=tf.int32)
        which = tf.argmin(tf.cast(oks[:, row], tf.int32), output_type=tf.int32)
        problems = tf.stack([_graph_message(c.problem, values, row) for c in checks])
        where = tf.where(tf.equal(paths[row], ""), "", tf.strings.join([" in ", paths[row]]))
        return _graph_message(schema.RECORD_MESSAGE, {"recording": recordings, "where": where,
                                                      "problem": problems[which]}, row)

    text = tf.cond(all_ok, lambda: tf.constant(""), message)
    return tf.debugging.Assert(all_ok, [text])


def parse_batch(records, paths, expected: schema.Expected = schema.Expected(),
                label_dims: bool = True) -> dict:
    """Parses and checks a batch of serialised records in the graph: the one record parser.

    Args:
        records: ``[B]`` serialised ``tf.train.Example`` strings.
        paths: ``[B]`` (or scalar) shard path of each record, named in errors.
        expected: what every record must be (:class:`schema.Expected`);
            its ``dim``, when set, is also the static feature dimension.
        label_dims: also decode the per-frame labels.

    Returns:
        ``features`` [B, T, D] float32 zero-padded to the batch's longest
        record, ``lengths`` [B] int32, ``mask`` [B, T], ``label_class`` [B]
        int32, ``label_dims`` [B, T, K] float32 (zero-padded; when asked),
        and the record's ``modality``, ``corpus``, ``speaker``,
        ``recording`` and ``split`` strings [B].

    Raises (when the batch is computed) ``tf.errors.InvalidArgumentError``
    whose message is :func:`schema.bad_record`'s for the first record that
    fails ``schema.RECORD_CHECKS``.

    >>> import tensorflow as tf
    >>> from emobed_tf.records.schema import Item, serialize_item, Expected
    >>> recs = [serialize_item(Item("audio", np.ones((t, 2)), 0, recording=f"r{t}"))
    ...         for t in (1, 3)]
    >>> out = parse_batch(tf.constant(recs), "x.tfrecord", Expected(dim=2))
    >>> out["features"].shape, out["lengths"].numpy().tolist()
    (TensorShape([2, 3, 2]), [1, 3])
    >>> parse_batch(tf.constant(recs), "x.tfrecord", Expected(dim=5))
    Traceback (most recent call last):
    ...
    tensorflow.python.framework.errors_impl.InvalidArgumentError: ...bad record 'r1' in
    x.tfrecord: feature dimension 2 differs from the manifest manifest.json, which says 5...
    """
    import tensorflow as tf

    ex = tf.io.parse_example(records, schema.feature_spec())
    n = tf.shape(records)[0]
    paths = tf.broadcast_to(paths, [n])
    shape = ex[schema.KEY_SHAPE]
    nbytes = tf.strings.length(ex[schema.KEY_FEATURES])
    width = (tf.reduce_max(nbytes) + 3) // 4 * 4  # decode_raw wants whole floats
    flat = tf.io.decode_raw(ex[schema.KEY_FEATURES], tf.float32, little_endian=True,
                            fixed_length=width)
    dshape = ex[schema.KEY_LABEL_DIMS_SHAPE]
    dims = tf.RaggedTensor.from_sparse(ex[schema.KEY_LABEL_DIMS])
    facts = {"version": ex[schema.KEY_VERSION], "modality": ex[schema.KEY_MODALITY],
             "frames": shape[:, 0], "dim": shape[:, 1], "nbytes": tf.cast(nbytes, tf.int64),
             "finite": tf.reduce_all(tf.math.is_finite(flat), axis=1),
             "label_class": ex[schema.KEY_LABEL_CLASS], "label_frames": dshape[:, 0],
             "label_width": dshape[:, 1],
             "label_count": tf.cast(dims.row_lengths(), tf.int64)}
    check = _assert_records(facts, expected, ex[schema.KEY_RECORDING], paths)
    with tf.control_dependencies([check]):  # nothing is shaped before the records passed
        lengths = tf.cast(shape[:, 0], tf.int32)
        t_max = tf.reduce_max(lengths)
        d = expected.dim if expected.dim is not None else tf.cast(tf.reduce_max(shape[:, 1]),
                                                                   tf.int32)
        out = {"features": tf.reshape(flat, [n, t_max, d]), "lengths": lengths,
               "mask": tf.sequence_mask(lengths, t_max),
               "label_class": tf.cast(ex[schema.KEY_LABEL_CLASS], tf.int32),
               "modality": ex[schema.KEY_MODALITY]}
        if label_dims:
            k = (expected.label_width if expected.label_width is not None
                 else tf.cast(tf.reduce_max(dshape[:, 1]), tf.int32))
            t_lab = tf.cast(tf.reduce_max(dshape[:, 0]), tf.int32)
            out["label_dims"] = tf.reshape(dims.to_tensor(shape=[n, t_lab * k]), [n, t_lab, k])
    for key in schema.ID_KEYS:
        out[key] = ex[key]
    return out


def parse_record(record, source=""):
    """One serialised record parsed and checked in the graph (:func:`parse_batch` of one).

    Returns ``features`` [T, D], ``label_class``, ``label_dims`` [T, K],
    ``modality`` and the id strings.

    >>> import tensorflow as tf
    >>> from emobed_tf.records.schema import Item, serialize_item
    >>> rec = serialize_item(Item("audio", np.ones((3, 2)), 1, np.zeros((3, 1)), recording="r"))
    >>> out = parse_record(tf.constant(rec))
    >>> out["features"].shape, int(out["label_class"]), out["label_dims"].shape
    (TensorShape([3, 2]), 1, TensorShape([3, 1]))
    """
    import tensorflow as tf

    out = parse_batch(tf.reshape(record, [1]), source)
    return {k: v[0] for k, v in out.items() if k not in ("lengths", "mask")}


def verify_shards(paths: Sequence[str], compression: str = "",
                  expected: schema.Expected = schema.Expected()) -> int:
    """Reads every record of every shard; raises DataError naming a corrupt file.

    Each record is decoded eagerly and must pass ``schema.RECORD_CHECKS``
    (those ``expected``, e.g. ``Source.expected(modality)``, enables).
    Returns the number of records read. Used up-front by ``inspect`` and
    after a failure during training to name the bad shard.

    >>> import tempfile
    >>> from emobed_tf.records.writer import ShardWriter
    >>> from emobed_tf.records.schema import Item, serialize_item
    >>> w = ShardWriter(tempfile.mkdtemp(), "audio-train")
    >>> w.write(serialize_item(Item("audio", np.ones((2, 3)), 0, recording="r1")))
    >>> path = os.path.join(w.directory, w.close()[0].path)
    >>> verify_shards([path])
    1
    >>> verify_shards([path], expected=schema.Expected(dim=4))
    Traceback (most recent call last):
    ...
    emobed_tf.records.schema.DataError: bad record 'r1' in ...audio-train-00000.tfrecord: feature
    dimension 3 differs from the manifest manifest.json, which says 4
    """
    import tensorflow as tf

    total = 0
    for path in paths:
        count = 0
        try:
            for rec in tf.data.TFRecordDataset(path, compression_type=compression or None):
                schema.decode_example(rec.numpy(), path, expected)
                count += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            raise DataError(f"{path}: corrupt or truncated TFRecord after {count} good records "
                            f"({_tf_message(err)})") from None
        total += count
    return total


def _tf_message(err) -> str:
    """The first line of a TensorFlow error without its op and function decorations.

    >>> _tf_message(ValueError("{{function_node __wrapped__X}} corrupted record at 12 [Op:Y]"))
    'corrupted record at 12'
    """
    line = (getattr(err, "message", None) or str(err)).strip().splitlines()[0]
    line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line)
    return line.split(" [Op:")[0].strip()


# what tf.io.parse_example says about a record that is not a schema record
_UNPARSABLE = ("Could not parse example input", "Name: <unknown>, Key:",
               "Name: <unknown>, Feature:")


def _assertion_text(msg: str) -> str:
    """The ``schema.BAD_RECORD`` message inside a ``tf.debugging.Assert`` failure.

    In a graph (``tf.data``) TensorFlow prints it C-escaped in brackets,
    ``assertion failed: [TEXT]``; run eagerly, as a bytes literal,
    ``Summarized data: b"TEXT"``.
    """
    line = next(ln for ln in msg.splitlines() if schema.BAD_RECORD in ln)
    start = line.index(schema.BAD_RECORD)
    if line[start - 2:start] in ('b"', "b'"):  # eager: a Python bytes literal
        quote = line[start - 1]
        text = line[start:line.rindex(quote)] if line.rindex(quote) > start else line[start:]
        return ast.literal_eval("b" + quote + text + quote).decode("utf-8", "replace")
    text = line[start:]
    text = text[:-1] if text.endswith("]") else text  # Assert's bracket around the text
    return codecs.escape_decode(text.encode("utf-8"))[0].decode("utf-8", "replace")


def _manifest_of(path: str) -> str | None:
    """The ``manifest.json`` of the data folder holding shard ``path``, if any."""
    folder = os.path.dirname(os.path.abspath(path))
    for _ in range(4):
        if os.path.isfile(os.path.join(folder, schema.MANIFEST_NAME)):
            return os.path.join(folder, schema.MANIFEST_NAME)
        folder = os.path.dirname(folder)
    return None


def data_error_from(err, shards: Sequence[tuple] = ()):
    """The DataError behind a ``tf.data`` failure, or None if it is not about the data.

    A failed record check (a message containing ``schema.BAD_RECORD``)
    becomes its message, which names the shard, recording and problem. A
    corrupt or truncated file (``DataLossError``) or a record that is not a
    schema record at all is traced to its file by reading the
    ``(path, compression)`` ``shards`` record by record. Shards that hold
    another number of examples than the manifest lists name the manifest.

    >>> import tensorflow as tf
    >>> err = tf.errors.InvalidArgumentError(
    ...     None, None, "assertion failed: [bad record 'r1' in a.tfrecord: NaN/inf features]")
    >>> data_error_from(err)
    DataError("bad record 'r1' in a.tfrecord: NaN/inf features")
    >>> data_error_from(ValueError("something else")) is None
    True
    """
    import tensorflow as tf

    msg = getattr(err, "message", None) or str(err)
    if isinstance(err, tf.errors.InvalidArgumentError) and schema.BAD_RECORD in msg:
        return DataError(_assertion_text(msg))
    unparsable = isinstance(err, UnicodeDecodeError) or (
        isinstance(err, tf.errors.InvalidArgumentError) and any(t in msg for t in _UNPARSABLE))
    if isinstance(err, tf.errors.DataLossError) or unparsable:
        for path, compression in shards:
            try:
                verify_shards([path], compression)
            except DataError as found:
                return found
        if isinstance(err, tf.errors.DataLossError):
            return DataError(f"corrupt TFRecord data: {_tf_message(err)}")
        return None
    counted = re.search(r"expected to contain (\d+) elements but contained (only|at least) "
                        r"(\d+)", msg)
    if isinstance(err, tf.errors.FailedPreconditionError) and counted:
        where = sorted({_manifest_of(p) or os.path.dirname(p) for p, _ in shards})
        want, how, got = counted.groups()
        return DataError(f"{', '.join(where) or 'the data'}: the shards hold "
                         f"{'fewer' if how == 'only' else 'more'} examples than the manifest "
                         f"lists ({want} batches expected, {'' if how == 'only' else 'at least '}"
                         f"{got} read); the manifest does not match the shards, regenerate the "
                         "data set")
    return None
