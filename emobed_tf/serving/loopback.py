"""Loopback server: an EMULATION of TF Serving's REST and gRPC APIs, for development and tests.

This is not a replacement for TF Serving: it serves one model folder from one
Python process with ``tf.saved_model.load`` (no batching, no model config file,
no monitoring, no version labels), and it speaks TF Serving's protocol so that
the clients written for ``tensorflow/serving`` (``curl``, ``requests``,
``tensorflow-serving-api`` stubs) can be tried without Docker. Deploy with TF
Serving; use this for development and tests (``tensorflow_model_server`` is on
neither PyPI nor Debian).

``python -m emobed_tf.serving.loopback --model-base-path saved_models/NAME --model-name NAME
--rest-port 8501 --grpc-port 8500`` (TF Serving's spellings ``--model_base_path``,
``--model_name``, ``--rest_api_port`` and ``--port`` work too) prints one start-up line with
both addresses and serves until Ctrl-C (one line on stderr, exit code 130; SIGTERM: 143).
From Python::

    with LoopbackServer("saved_models/demo-audio", "demo-audio") as server:
        server.rest_url      # "http://127.0.0.1:<port>"
        server.grpc_target   # "127.0.0.1:<port>"

What it serves, as TF Serving does:

* The model base folder holds numbered version folders (``NAME/1/``, ``NAME/2/``, the
  layout ``python -m emobed_tf.export`` writes). Every version present is served
  (TF Serving's ``all`` version policy; its default, ``latest``, would load only the
  newest), a request without a version gets the newest, and version folders that
  appear later are picked up at the next request that needs them.
* gRPC ``tensorflow.serving.PredictionService``: ``Predict`` (``model_spec.name``,
  optional ``version`` and ``signature_name``, default ``serving_default``,
  ``output_filter``; outputs as typed ``*_val`` fields, as TF Serving's default) and
  ``GetModelMetadata`` (``metadata_field`` ``signature_def``: a ``SignatureDefMap`` with
  every signature of the ``serve`` meta graph). ``Classify``, ``Regress`` and
  ``MultiInference`` answer ``UNIMPLEMENTED``. ``tensorflow.serving.ModelService``:
  ``GetModelStatus``.
* REST: ``GET /v1/models/NAME[/versions/N]`` (status),
  ``GET /v1/models/NAME[/versions/N]/metadata`` (``{"model_spec": ..., "metadata":
  {"signature_def": {"signature_def": {...}}}}``, protobuf JSON with the proto field
  names and int64 values as strings, as TF Serving prints it) and
  ``POST /v1/models/NAME[/versions/N]:predict`` with ``signature_name`` and either
  ``instances`` (row format: one object per item, batched along a new first axis;
  answer ``{"predictions": [...]}``, one object per item, or bare values if the
  signature has one output) or ``inputs`` (columnar: whole tensors; answer
  ``{"outputs": {...}}``, or the bare value for one output). JSON values are read as
  the signature's input dtypes; float32 outputs are written with their shortest
  float32 representation.
* Errors: a bad input gets gRPC ``INVALID_ARGUMENT`` / HTTP 400 with the graph's own
  message (for an emobed_tf export, e.g. ``features must have 88 values per frame, got
  7``), an unknown model or version ``NOT_FOUND`` / HTTP 404 (``Servable not found for
  request: Latest(NAME)`` / ``Specific(NAME, 3)``); REST errors are ``{"error": "..."}``.

Extra, not in TF Serving: where the version folder has
``assets.extra/emobed_export.json`` (what ``emobed_tf.export`` writes beside the
graph: the feature size, task, outputs, normalisation and its fallback statistics),
the metadata response carries it so that a client can read the recipe from the
server: REST ``metadata["emobed_export"]`` (the JSON object itself), gRPC
``GetModelMetadataResponse.metadata["emobed_export"]``, a ``google.protobuf.Any``
wrapping a ``google.protobuf.StringValue`` with the file's JSON text (returned with
``signature_def``, or alone when ``metadata_field`` asks for ``emobed_export``).
Without the file the key is absent.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.server
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time

EMULATION = ("an emulation of TF Serving's REST and gRPC APIs for development and tests, "
             "not a replacement for TF Serving")
EXTRA_KEY = "emobed_export"
EXTRA_FILE = os.path.join("assets.extra", "emobed_export.json")
DEFAULT_SIGNATURE = "serving_default"
INTERRUPTED = 130  # exit code after Ctrl-C (128 + SIGINT)
TERMINATED = 143  # after SIGTERM

# gRPC status code names -> HTTP status, as TF Serving's REST server maps them
_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
                "NOT_FOUND": 404, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "INTERNAL": 500,
                "UNKNOWN": 500, "DEADLINE_EXCEEDED": 504, "RESOURCE_EXHAUSTED": 429}


class ServingError(Exception):
    """A request TF Serving would refuse: ``code`` is the gRPC status code's name."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


# --------------------------------------------------------------------------
# the model: numbered versions under a base folder


class _Version:
    """One loaded version: the SavedModel, its ``serve`` signature_defs, the extra file."""

    def __init__(self, path: str, number: int):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.path, self.number = path, number
        sm = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as fh:
            sm.ParseFromString(fh.read())
        graphs = [g for g in sm.meta_graphs if "serve" in g.meta_info_def.tags]
        if not graphs:
            raise ValueError(f"{path}: has no meta graph tagged 'serve'")
        self.signature_defs = graphs[0].signature_def
        self.loaded = tf.saved_model.load(path, tags=["serve"])
        extra = os.path.join(path, EXTRA_FILE)
        self.extra_text = None
        if os.path.isfile(extra):
            with open(extra, encoding="utf-8") as fh:
                self.extra_text = fh.read()

    def signature(self, name: str):
        """(SignatureDef, concrete function) of ``name`` (empty: serving_default)."""
        name = name or DEFAULT_SIGNATURE
        if name not in self.signature_defs or name not in self.loaded.signatures:
            raise ServingError("FAILED_PRECONDITION",
                               f'Serving signature key "{name}" not found.')
        return self.signature_defs[name], self.loaded.signatures[name]

    def run(self, signature_name: str, inputs: dict, output_filter=()):
        """{output alias: numpy array} of ``signature_name`` on {input alias: numpy array}."""
        import numpy as np
        import tensorflow as tf

        sig, fn = self.signature(signature_name)
        sent, wanted = set(inputs), set(sig.inputs)
        if sent != wanted:
            raise _invalid(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. Missing but required: "
                f"{{{','.join(sorted(wanted - sent))}}}.")
        for alias in output_filter:
            if alias not in sig.outputs:
                raise _invalid(f"output tensor alias not found in signature: {alias} Outputs "
                               f"expected to be in the set {{{','.join(sorted(sig.outputs))}}}.")
        args = {}
        for i, alias in enumerate(sorted(sig.inputs)):
            want = tf.dtypes.as_dtype(sig.inputs[alias].dtype)
            value = np.asarray(inputs[alias])
            got = tf.dtypes.as_dtype(value.dtype) if value.dtype != object else tf.string
            if got != want:
                raise _invalid(f"Expects arg[{i}] ({alias}) to be {want.name} but {got.name} "
                               "is provided")
            args[alias] = tf.constant(value, want)
        try:
            out = fn(**args)
        except tf.errors.OpError as err:
            code = {tf.errors.InvalidArgumentError: "INVALID_ARGUMENT",
                    tf.errors.NotFoundError: "NOT_FOUND",
                    tf.errors.FailedPreconditionError: "FAILED_PRECONDITION",
                    tf.errors.OutOfRangeError: "OUT_OF_RANGE",
                    tf.errors.ResourceExhaustedError: "RESOURCE_EXHAUSTED",
                    tf.errors.UnimplementedError: "UNIMPLEMENTED"}.get(type(err), "INTERNAL")
            raise ServingError(code, err.message) from None
        except (TypeError, ValueError) as err:  # refused by the signature before the graph
            raise _invalid(str(err)) from None
        names = list(output_filter) or sorted(out)
        return {n: out[n].numpy() for n in names}


class _Model:
    """The versions of one model base folder, loaded at start and when new ones appear."""

    def __init__(self, base_path: str, name: str):
        self.base_path, self.name = os.path.abspath(base_path), name
        self._versions: dict[int, _Version] = {}
        self._lock = threading.Lock()
        if not os.path.isdir(self.base_path):
            raise FileNotFoundError(f"{base_path}: no such model base folder (it holds "
                                    "numbered version folders, e.g. NAME/1/)")
        found = self.on_disk()
        if not found:
            raise FileNotFoundError(f"{base_path}: no version folder with a saved_model.pb "
                                    "(TF Serving serves NAME/<positive integer>/)")
        for number in found:
            self._load(number)

    def on_disk(self) -> list:
        try:
            names = os.listdir(self.base_path)
        except OSError:
            return []
        return sorted(int(n) for n in names if re.fullmatch(r"\d+", n) and int(n) > 0
                      and os.path.isfile(os.path.join(self.base_path, n, "saved_model.pb")))

    def _load(self, number: int) -> _Version:
        with self._lock:
            if number not in self._versions:
                self._versions[number] = _Version(os.path.join(self.base_path, str(number)),
                                                  number)
            return self._versions[number]

    def versions(self) -> list:
        return sorted(set(self._versions) | set(self.on_disk()))

    def get(self, name: str, version=None) -> _Version:
        """The version asked for (None: the newest), or NOT_FOUND as TF Serving words it."""
        if name != self.name:
            raise ServingError("NOT_FOUND", "Servable not found for request: "
                               + (f"Specific({name}, {version})" if version is not None
                                  else f"Latest({name})"))
        available = self.versions()
        number = max(available) if version is None else int(version)
        if number not in available:
            raise ServingError("NOT_FOUND",
                               f"Servable not found for request: Specific({name}, {number})")
        try:
            return self._load(number)
        except Exception as err:  # noqa: BLE001 (a half-written or foreign folder)
            raise ServingError("UNAVAILABLE", f"version {number} of {name} failed to load: "
                               f"{type(err).__name__}: {err}") from None

    def status(self, name: str, version=None):
        """A ``GetModelStatusResponse``."""
        from tensorflow_serving.apis import get_model_status_pb2

        if name != self.name:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        numbers = self.versions()
        if version is not None:
            if int(version) not in numbers:
                raise ServingError("NOT_FOUND",
                                   f"Could not find version {version} of model {name}")
            numbers = [int(version)]
        resp = get_model_status_pb2.GetModelStatusResponse()
        for number in numbers:
            st = resp.model_version_status.add()
            st.version = number
            st.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            st.status.SetInParent()  # error_code OK, error_message "", as TF Serving sends
        return resp

    def metadata(self, name: str, version=None, fields=("signature_def",)):
        """A ``GetModelMetadataResponse`` (signature_def, and the emobed_export extra)."""
        from google.protobuf import wrappers_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        fields = list(fields)
        if not fields:
            raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field not in ("signature_def", EXTRA_KEY):
                raise _invalid(f"Metadata field {field} is not supported")
        served = self.get(name, version)
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.name = name
        resp.model_spec.version.value = served.number
        if "signature_def" in fields:
            sigs = get_model_metadata_pb2.SignatureDefMap()
            for key, sig in served.signature_defs.items():
                sigs.signature_def[key].CopyFrom(sig)
            resp.metadata["signature_def"].Pack(sigs)
        if served.extra_text is not None:
            resp.metadata[EXTRA_KEY].Pack(wrappers_pb2.StringValue(value=served.extra_text))
        return resp


# --------------------------------------------------------------------------
# tensors: TensorProto and JSON


def _from_proto(proto):
    import tensorflow as tf

    try:
        return tf.make_ndarray(proto)
    except Exception as err:  # noqa: BLE001 (a malformed TensorProto)
        raise _invalid(f"cannot read the TensorProto: {err}") from None


def _to_proto(array):
    """TensorProto with typed ``*_val`` fields (TF Serving's default, ``AsProtoField``)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    array = np.asarray(array)
    dtype = tf.dtypes.as_dtype(array.dtype) if array.dtype != object else tf.string
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum, tensor_shape=(
        tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape])))
    flat = array.ravel()
    field = {tf.float32: "float_val", tf.float64: "double_val", tf.int32: "int_val",
             tf.int16: "int_val", tf.int8: "int_val", tf.uint8: "int_val",
             tf.int64: "int64_val", tf.bool: "bool_val", tf.string: "string_val",
             tf.uint32: "uint32_val", tf.uint64: "uint64_val"}.get(dtype)
    if field is None:
        return tf.make_tensor_proto(array)
    if dtype == tf.string:
        getattr(proto, field).extend(v if isinstance(v, bytes) else str(v).encode()
                                     for v in flat)
    else:
        getattr(proto, field).extend(flat.tolist())
    return proto


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    return "Array" if isinstance(value, list) else "Object"


def _json_shape(value) -> list:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _json_to_array(value, dtype):
    """A JSON value as a numpy array of the signature's ``dtype`` (a tf.DType)."""
    import numpy as np
    import tensorflow as tf

    shape = _json_shape(value)
    leaves = []

    def fill(val, level):
        if not isinstance(val, list):
            if level != len(shape):
                raise _invalid(f"Encountered scalar element at level: {level} expected "
                               f"level: {len(shape)}")
            leaves.append(_json_scalar(val, dtype))
            return
        if level >= len(shape):
            raise _invalid(f"Encountered list at unexpected level: {level} expected < "
                           f"{len(shape)}")
        if len(val) != shape[level]:
            raise _invalid(f"Encountered list at unexpected size: {len(val)} at level: "
                           f"{level} expected size: {shape[level]}")
        for v in val:
            fill(v, level + 1)

    fill(value, 0)
    if dtype == tf.string:
        return np.array(leaves, dtype=object).reshape(shape)
    return np.array(leaves, dtype=dtype.as_numpy_dtype).reshape(shape)


def _json_scalar(val, dtype):
    import tensorflow as tf

    def wrong():
        text = json.dumps(val) if not isinstance(val, float) else repr(val)
        return _invalid(f"JSON Value: {text} Type: {_json_type(val)} is not of expected "
                        f"type: {dtype.name}")

    if dtype == tf.string:
        if isinstance(val, dict) and set(val) == {"b64"} and isinstance(val["b64"], str):
            try:
                return base64.b64decode(val["b64"], validate=True)
            except ValueError:
                raise _invalid(f"Unable to base64 decode {val['b64']!r}") from None
        if isinstance(val, str):
            return val.encode()
        raise wrong()
    if dtype == tf.bool:
        if isinstance(val, bool):
            return val
        raise wrong()
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise wrong()
    if dtype.is_floating:
        return float(val)
    if dtype.is_integer:
        if not isinstance(val, int) or not dtype.min <= val <= dtype.max:
            raise wrong()
        return val
    raise _invalid(f"the JSON API of this emulation cannot send {dtype.name} inputs")


def _array_to_json(array):
    """Nested lists; float32 values with their shortest float32 representation."""
    import numpy as np

    array = np.asarray(array)
    if array.dtype == np.float32:
        flat = [float(str(v)) for v in array.ravel()]
    elif array.dtype.kind in "SO":
        flat = []
        for v in array.ravel():
            if isinstance(v, bytes):
                try:
                    v = v.decode("utf-8")
                except UnicodeDecodeError:
                    v = {"b64": base64.b64encode(v).decode()}
            flat.append(v)
    else:
        flat = array.ravel().tolist()
    if array.ndim == 0:
        return flat[0]
    return np.array(flat + [None], dtype=object)[:-1].reshape(array.shape).tolist()


def _rest_predict(served: _Version, body: bytes) -> dict:
    import tensorflow as tf

    try:
        doc = json.loads(body.decode("utf-8") if body else "")
    except (ValueError, UnicodeDecodeError) as err:
        raise _invalid(f"JSON Parse error: {err}") from None
    if not isinstance(doc, dict):
        raise _invalid("JSON Value: is not object")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise _invalid("'signature_name' key must be a string value.")
    sig, _ = served.signature(signature_name)
    dtypes = {k: tf.dtypes.as_dtype(v.dtype) for k, v in sig.inputs.items()}
    if not dtypes:
        raise _invalid("Failed to get input map for signature: "
                       + (signature_name or "DEFAULT"))
    if "instances" in doc and "inputs" in doc:
        raise _invalid("Not formatted correctly expecting only one of 'inputs' or "
                       "'instances' keys to exist")
    if "instances" in doc:
        rows = doc["instances"]
        if not isinstance(rows, list):
            raise _invalid("Excepting 'instances' to be an list/array")
        if not rows:
            raise _invalid("No values in 'instances' array")
        inputs = _rows_to_inputs(rows, dtypes)
        outputs = served.run(signature_name, inputs)
        return {"predictions": _outputs_to_rows(outputs)}
    if "inputs" in doc:
        value = doc["inputs"]
        if not isinstance(value, dict) or set(value) == {"b64"}:
            if len(dtypes) > 1:
                raise _invalid("inputs is a plain value/list, but expecting an object as "
                               "multiple input tensors required as per tensorinfo_map")
            (name, dtype), = dtypes.items()
            inputs = {name: _json_to_array(value, dtype)}
        else:
            inputs = {}
            for name in sorted(dtypes):  # other keys are ignored, as TF Serving does
                if name not in value:
                    raise _invalid(f"Missing named input: {name} in 'inputs' object.")
                inputs[name] = _json_to_array(value[name], dtypes[name])
        outputs = served.run(signature_name, inputs)
        if len(outputs) == 1:
            return {"outputs": _array_to_json(next(iter(outputs.values())))}
        return {"outputs": {k: _array_to_json(v) for k, v in outputs.items()}}
    raise _invalid("Missing 'inputs' or 'instances' key")


def _rows_to_inputs(rows: list, dtypes: dict) -> dict:
    import numpy as np

    def is_object(v):
        return isinstance(v, dict) and set(v) != {"b64"}

    if not is_object(rows[0]) and len(dtypes) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as multiple "
                       "input tensors required as per tensorinfo_map")
    objects = is_object(rows[0])
    columns = {name: [] for name in dtypes}
    for i, row in enumerate(rows):
        if objects:
            if not is_object(row):
                raise _invalid(f"Expecting object but got list at item {i} of input list")
            for name, value in row.items():
                if name not in dtypes:
                    raise _invalid(f"Failed to process element: {i} key: {name} of "
                                   "'instances' list. Error: INVALID_ARGUMENT: JSON object: "
                                   f"does not have named input: {name}")
                try:
                    columns[name].append(_json_to_array(value, dtypes[name]))
                except ServingError as err:
                    raise _invalid(f"Failed to process element: {i} key: {name} of "
                                   f"'instances' list. Error: INVALID_ARGUMENT: "
                                   f"{err.message}") from None
            if set(row) != set(dtypes):
                raise _invalid(f"Failed to process element: {i} of 'instances' list. JSON "
                               f"object: {json.dumps(row)[:200]} must only have keys: "
                               f"{','.join(sorted(dtypes))}")
        else:
            if is_object(row):
                raise _invalid(f"Expecting value/list but got object at item {i} of input "
                               "list")
            (name, dtype), = dtypes.items()
            try:
                columns[name].append(_json_to_array(row, dtype))
            except ServingError as err:
                raise _invalid(f"Failed to process element: {i} of 'instances' list. "
                               f"Error: INVALID_ARGUMENT: {err.message}") from None
    out = {}
    for name, items in columns.items():
        first = items[0].shape
        for item in items[1:]:
            if item.size != items[0].size:
                raise _invalid(f"Expecting tensor size: {items[0].size} but got: {item.size}")
            if item.shape != first:
                raise _invalid(f"Expecting shape {list(first)} but got: {list(item.shape)}")
        out[name] = np.stack(items)
    return out


def _outputs_to_rows(outputs: dict) -> list:
    names = list(outputs)
    batch = None
    for name in names:
        arr = outputs[name]
        if arr.ndim == 0:
            raise _invalid(f"Tensor name: {name} has no shape information ")
        if batch is None:
            batch = arr.shape[0]
        elif arr.shape[0] != batch:
            raise _invalid(f"Tensor name: {name} has inconsistent batch size: {arr.shape[0]} "
                           f"expecting: {batch}")
    if len(names) == 1:
        return [_array_to_json(v) for v in outputs[names[0]]]
    return [{n: _array_to_json(outputs[n][i]) for n in names} for i in range(batch)]


def _proto_json(message) -> dict:
    from google.protobuf import json_format

    try:
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    except TypeError:  # protobuf < 5.26
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         including_default_value_fields=True)


def _rest_metadata(model: _Model, name: str, version) -> dict:
    from tensorflow_serving.apis import get_model_metadata_pb2

    resp = model.metadata(name, version)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sigs)
    out = {"model_spec": _proto_json(resp.model_spec),
           "metadata": {"signature_def": _proto_json(sigs)}}
    served = model.get(name, version)
    if served.extra_text is not None:
        out["metadata"][EXTRA_KEY] = json.loads(served.extra_text)
    return out


# --------------------------------------------------------------------------
# REST


_ROUTE = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|"
                    r"/labels/(?P<label>[^/:]+))?(?P<what>/metadata|:predict|:classify|"
                    r":regress)?")


def _make_handler(model: _Model):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "emobed-tf-loopback (emulation of TF Serving)"
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: tests and terminals
            pass

        def _send(self, status: int, payload) -> None:
            body = (json.dumps(payload, indent=1) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            try:
                payload = self._route(method, path, body)
            except ServingError as err:
                self._send(_HTTP_STATUS.get(err.code, 500), {"error": err.message})
                return
            except Exception as err:  # noqa: BLE001 (an emulation bug: say so, keep serving)
                self._send(500, {"error": f"{type(err).__name__}: {err}"})
                return
            self._send(200, payload)

        def _route(self, method: str, path: str, body: bytes):
            m = _ROUTE.fullmatch(path)
            if not m:
                raise _invalid(f"Malformed request: {method} {path}")
            name, version, what = m["name"], m["version"], m["what"] or ""
            if m["label"]:
                raise _invalid(f"Unrecognized servable version label: {m['label']}")
            version = int(version) if version is not None else None
            if method == "GET" and what == "":
                return _proto_json(model.status(name, version))
            if method == "GET" and what == "/metadata":
                return _rest_metadata(model, name, version)
            if method == "POST" and what == ":predict":
                return _rest_predict(model.get(name, version), body)
            if method == "POST" and what in (":classify", ":regress"):
                raise ServingError("UNIMPLEMENTED", f"{what[1:]} is not implemented by this "
                                   "emulation (predict only)")
            raise _invalid(f"Malformed request: {method} {path}")

        def do_GET(self):  # noqa: N802 (http.server's names)
            self._handle("GET")

        def do_POST(self):  # noqa: N802
            self._handle("POST")

    return Handler


# --------------------------------------------------------------------------
# gRPC


def _grpc_servicers(model: _Model):
    import grpc
    from tensorflow_serving.apis import (model_service_pb2_grpc, predict_pb2,
                                         prediction_service_pb2_grpc)

    def abort(context, err: ServingError):
        context.abort(getattr(grpc.StatusCode, err.code, grpc.StatusCode.UNKNOWN), err.message)

    def version_of(spec):
        if spec.HasField("version_label"):
            raise _invalid(f"Unrecognized servable version label: {spec.version_label}")
        return spec.version.value if spec.HasField("version") else None

    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 (the service's names)
            try:
                served = model.get(request.model_spec.name, version_of(request.model_spec))
                inputs = {k: _from_proto(v) for k, v in request.inputs.items()}
                outputs = served.run(request.model_spec.signature_name, inputs,
                                     list(request.output_filter))
            except ServingError as err:
                abort(context, err)
            resp = predict_pb2.PredictResponse()
            resp.model_spec.name = model.name
            resp.model_spec.version.value = served.number
            resp.model_spec.signature_name = request.model_spec.signature_name or \
                DEFAULT_SIGNATURE
            for k, v in outputs.items():
                resp.outputs[k].CopyFrom(_to_proto(v))
            return resp

        def GetModelMetadata(self, request, context):  # noqa: N802
            try:
                return model.metadata(request.model_spec.name, version_of(request.model_spec),
                                      request.metadata_field)
            except ServingError as err:
                abort(context, err)

    class Models(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):  # noqa: N802
            try:
                return model.status(request.model_spec.name, version_of(request.model_spec))
            except ServingError as err:
                abort(context, err)

    def add(server):
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Prediction(), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(), server)

    return add


# --------------------------------------------------------------------------
# the server


class LoopbackServer:
    """Serves ``base_path``'s versions as model ``name`` over REST and gRPC (an emulation).

    ``rest_port`` / ``grpc_port``: 0 picks a free port, None leaves that API off.
    Bound to ``host`` (127.0.0.1 by default). Use as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(self, base_path: str, name: str, rest_port: int | None = 0,
                 grpc_port: int | None = 0, host: str = "127.0.0.1"):
        self.base_path, self.name, self.host = base_path, name, host
        self._want_rest, self._want_grpc = rest_port, grpc_port
        self.rest_port = self.grpc_port = None
        self.model = None
        self._http = self._http_thread = self._grpc = None

    @property
    def _netloc_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def rest_url(self) -> str | None:
        """``http://HOST:PORT`` (no trailing slash), None without REST."""
        return None if self.rest_port is None else f"http://{self._netloc_host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str | None:
        """``HOST:PORT`` for ``grpc.insecure_channel``, None without gRPC."""
        return None if self.grpc_port is None else f"{self._netloc_host}:{self.grpc_port}"

    def start(self) -> "LoopbackServer":
        self.model = _Model(self.base_path, self.name)
        try:
            if self._want_grpc is not None:
                import grpc
                from concurrent import futures

                self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
                _grpc_servicers(self.model)(self._grpc)
                port = self._grpc.add_insecure_port(f"{self._netloc_host}:{self._want_grpc}")
                if not port:
                    raise OSError(f"cannot bind gRPC to {self.host}:{self._want_grpc}")
                self._grpc.start()
                self.grpc_port = port
            if self._want_rest is not None:
                server_cls = type("Server", (http.server.ThreadingHTTPServer,), {
                    "daemon_threads": True, "allow_reuse_address": True,
                    "address_family": __import__("socket").AF_INET6 if ":" in self.host
                    else __import__("socket").AF_INET})
                self._http = server_cls((self.host, self._want_rest), _make_handler(self.model))
                self.rest_port = self._http.server_address[1]
                self._http_thread = threading.Thread(target=self._http.serve_forever,
                                                     kwargs={"poll_interval": 0.1},
                                                     name="loopback-rest", daemon=True)
                self._http_thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace=0.5).wait()
            self._grpc = None
        self.rest_port = self.grpc_port = None

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def banner(self) -> str:
        """The start-up line: what this is, the model, both addresses."""
        parts = []
        if self.rest_url:
            parts.append(f"REST {self.rest_url}/v1/models/{self.name}")
        if self.grpc_target:
            parts.append(f"gRPC {self.grpc_target}")
        versions = ", ".join(map(str, self.model.versions()))
        return (f"emobed_tf loopback server ({EMULATION}): model {self.name!r} versions "
                f"[{versions}] from {self.model.base_path}; {'; '.join(parts)}; Ctrl-C stops")


# TensorFlow's native start-up chatter (info/warning lines of its C++ logging)
_CHATTER = re.compile(r"WARNING: All log messages before absl::InitializeLog|[IW]\d{4} "
                      r"[\d:.]+\s+\d+ \S+:\d+\]|To enable the following instructions")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Drops TensorFlow's native info/warning lines written to fd 2 meanwhile; keeps the rest."""
    if sys.stderr is not sys.__stderr__:  # captured (a test runner): leave it alone
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines(True):
                if not _CHATTER.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"ports are integers 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"ports are integers 0-65535, got {text!r}")
    return value


class _Terminated(Exception):
    pass


def _terminated(signum, frame):
    raise _Terminated()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m emobed_tf.serving.loopback",
        description=f"Loopback server: {EMULATION}. Serves one exported model folder "
                    "(numbered versions) over TF Serving's REST and gRPC protocols so that "
                    "clients can be tried without Docker; deploy with TF Serving itself.")
    p.add_argument("--model-base-path", "--model_base_path", required=True,
                   help="the model folder holding numbered versions, e.g. saved_models/NAME")
    p.add_argument("--model-name", "--model_name",
                   help="the name clients ask for (default: the folder's name)")
    p.add_argument("--rest-port", "--rest_api_port", type=_port, default=8501,
                   help="REST port (default 8501; 0 picks a free one)")
    p.add_argument("--grpc-port", "--port", type=_port, default=8500,
                   help="gRPC port (default 8500; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    name = args.model_name or os.path.basename(os.path.normpath(args.model_base_path))
    server = LoopbackServer(args.model_base_path, name, args.rest_port, args.grpc_port,
                            args.host)
    # Ctrl-C stops it even where SIGINT came ignored (a job started with & by a script);
    # SIGTERM (docker stop, kill) stops it cleanly too
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        try:
            with _quiet_native_stderr():
                server.start()
        except (OSError, ValueError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(server.banner(), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
        print("loopback server stopped (Ctrl-C)", file=sys.stderr, flush=True)
        return INTERRUPTED
    except _Terminated:
        server.stop()
        print("loopback server stopped (SIGTERM)", file=sys.stderr, flush=True)
        return TERMINATED
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
