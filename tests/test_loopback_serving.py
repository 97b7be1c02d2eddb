"""The loopback server (an emulation of TF Serving for development and tests) serves an
export as TF Serving would: REST row and columnar predictions and gRPC Predict equal the
SavedModel's own signature, metadata, errors, versions, the CLI, and the README's client
snippets run as written against it.

One model base folder is shared by the module: version 1 is a small pure-TensorFlow
SavedModel with the same inputs (a different model, so that asking for a version is
visible in the numbers), version 2 the export of a tiny trained run (88-d audio, the size
the README's snippets send), written by ``python -m emobed_tf.export``'s ``main``.
"""

import json
import os
import queue
import re
import runpy
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from emobed_tf.serving.loopback import LoopbackServer, main as loopback_main
from tests.conftest import ROOT, train_cli, write_classification

NAME = "demo-audio"  # the README's model name: its snippets run without a name change
DIM = 88
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
       "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def _stub_model(path):
    """Version 1: same signature inputs, other numbers (no assets.extra)."""
    import tensorflow as tf

    class Stub(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="features"),
                                      tf.TensorSpec(None, tf.int32, name="lengths")])
        def serve(self, features, lengths):
            m = tf.reduce_mean(features, axis=[1, 2]) + tf.cast(lengths, tf.float32)
            p = tf.nn.softmax(tf.stack([m, -m, 0.5 * m], -1))
            return {"probabilities": p, "class_id": tf.argmax(p, -1, output_type=tf.int32)}

    stub = Stub()
    tf.saved_model.save(stub, str(path), signatures={"serving_default": stub.serve})


def _reference(path, signature="serving_default", **inputs):
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures[signature]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


class _Proc:
    """A process whose stdout lines can be awaited while it runs."""

    def __init__(self, argv, **kwargs):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=ENV, **kwargs)
        self.lines = queue.Queue()
        self.out = []
        self.err = []
        streams = ((self.proc.stdout, self.out, self.lines), (self.proc.stderr, self.err, None))
        self.pumps = [threading.Thread(target=self._pump, args=args, daemon=True)
                      for args in streams]
        for pump in self.pumps:
            pump.start()

    @staticmethod
    def _pump(stream, into, lines):
        for line in stream:
            into.append(line)
            if lines is not None:
                lines.put(line)

    def line(self, timeout=180):
        return self.lines.get(timeout=timeout)

    def wait(self, timeout=180):
        code = self.proc.wait(timeout=timeout)
        for pump in self.pumps:
            pump.join(timeout=30)
        return code, "".join(self.out), "".join(self.err)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _export_cli(*argv):
    """``python -m emobed_tf.export ARGV``, run in this process (TensorFlow is loaded already)."""
    saved = sys.argv
    sys.argv = ["python -m emobed_tf.export", *argv]
    try:
        runpy.run_module("emobed_tf.export", run_name="__main__")
    except SystemExit as done:
        return done.code
    finally:
        sys.argv = saved
    return 0


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("loopback")
    data = root / "data"
    write_classification(data, dims={"audio": DIM})
    run = root / "run"
    train_cli(["--dataset", "custom", "--data-dir", str(data), "--out", str(run),
               "--batch-size", "8", "--encoder-units", "8", "--shared-units", "8",
               "--verbose", "0", "--epochs", "1", "--mode", "classic",
               "--encoder-layers", "1", "--shared-layers", "1"])
    base = root / "saved_models" / NAME
    _stub_model(base / "1")
    assert _export_cli("--run", str(run), "--out", str(base)) == 0
    assert sorted(os.listdir(base)) == ["1", "2"]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5, DIM)).astype(np.float32) + 1.0
    lengths = np.array([5, 2, 1], np.int32)
    return {"base": base, "x": x, "lengths": lengths,
            "ref": _reference(base / "2", features=x, lengths=lengths),
            "emb": _reference(base / "2", "embedding", features=x, lengths=lengths),
            "ref_v1": _reference(base / "1", features=x, lengths=lengths)}


@pytest.fixture(scope="module")
def cli_process(model):
    """The CLI on free ports, started early (it spends its time importing TensorFlow)."""
    proc = _Proc([sys.executable, "-m", "emobed_tf.serving.loopback", "--model-base-path",
                  str(model["base"]), "--model-name", NAME, "--rest-port", "0",
                  "--grpc-port", "0"], cwd=ROOT,
                 # as a script's `cmd &` starts it: Ctrl-C must stop it all the same
                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def server(model, cli_process):
    with LoopbackServer(str(model["base"]), NAME) as srv:
        yield srv


def _http(method, url, payload=None):
    """(status, decoded JSON body)."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _stub(server):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(server.grpc_target))


def _predict_request(features, lengths, name=NAME, version=None, signature="serving_default"):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    req.inputs["features"].CopyFrom(tf.make_tensor_proto(np.asarray(features, np.float32)))
    req.inputs["lengths"].CopyFrom(tf.make_tensor_proto(np.asarray(lengths, np.int32)))
    return req


def test_rest_row_and_columnar_predictions_equal_the_signature(server, model):
    x, lengths, ref = model["x"], model["lengths"], model["ref"]
    url = f"{server.rest_url}/v1/models/{NAME}:predict"
    # columnar: whole tensors in, {"outputs": {name: tensor}} out
    code, body = _http("POST", url, {"signature_name": "serving_default",
                                     "inputs": {"features": x.tolist(),
                                                "lengths": lengths.tolist()}})
    assert code == 200, body
    assert set(body) == {"outputs"} and set(body["outputs"]) == {"probabilities", "class_id"}
    np.testing.assert_allclose(body["outputs"]["probabilities"], ref["probabilities"],
                               rtol=0, atol=1e-6)
    np.testing.assert_array_equal(body["outputs"]["class_id"], ref["class_id"])
    # row format (signature_name omitted: serving_default): one object per item
    code, body = _http("POST", url, {"instances": [
        {"features": x[i].tolist(), "lengths": int(lengths[i])} for i in range(len(x))]})
    assert code == 200, body
    assert set(body) == {"predictions"} and len(body["predictions"]) == 3
    for i, row in enumerate(body["predictions"]):
        assert set(row) == {"probabilities", "class_id"}
        np.testing.assert_allclose(row["probabilities"], ref["probabilities"][i], rtol=0,
                                   atol=1e-6)
        assert row["class_id"] == ref["class_id"][i]
    # another signature; one output: the bare tensor
    code, body = _http("POST", url, {"signature_name": "embedding", "inputs": {
        "features": x.tolist(), "lengths": lengths.tolist()}})
    assert code == 200, body
    np.testing.assert_allclose(body["outputs"], model["emb"]["embedding"], rtol=0, atol=1e-6)
    code, body = _http("POST", url, {"signature_name": "embedding", "instances": [
        {"features": x[i].tolist(), "lengths": int(lengths[i])} for i in range(3)]})
    assert code == 200, body
    np.testing.assert_allclose(body["predictions"], model["emb"]["embedding"], rtol=0,
                               atol=1e-6)


def test_grpc_predict_equals_the_signature(server, model):
    import tensorflow as tf

    stub = _stub(server)
    resp = stub.Predict(_predict_request(model["x"], model["lengths"]), 30.0)
    assert resp.model_spec.name == NAME and resp.model_spec.version.value == 2
    assert resp.model_spec.signature_name == "serving_default"
    assert set(resp.outputs) == {"probabilities", "class_id"}
    probs = resp.outputs["probabilities"]
    assert probs.dtype == tf.float32.as_datatype_enum and len(probs.float_val) == 9
    np.testing.assert_allclose(tf.make_ndarray(probs), model["ref"]["probabilities"], rtol=0,
                               atol=1e-6)
    np.testing.assert_array_equal(tf.make_ndarray(resp.outputs["class_id"]),
                                  model["ref"]["class_id"])
    # output_filter, and another signature
    req = _predict_request(model["x"], model["lengths"], signature="embedding")
    resp = stub.Predict(req, 30.0)
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["embedding"]),
                               model["emb"]["embedding"], rtol=0, atol=1e-6)
    req = _predict_request(model["x"], model["lengths"])
    req.output_filter.append("class_id")
    assert set(stub.Predict(req, 30.0).outputs) == {"class_id"}


def test_metadata_lists_the_signatures_and_the_export_recipe(server, model):
    import tensorflow as tf
    from google.protobuf import wrappers_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    code, body = _http("GET", f"{server.rest_url}/v1/models/{NAME}/metadata")
    assert code == 200, body
    assert body["model_spec"]["name"] == NAME and body["model_spec"]["version"] == "2"
    sigs = body["metadata"]["signature_def"]["signature_def"]
    default = sigs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert {k: v["dtype"] for k, v in default["inputs"].items()} == {
        "features": "DT_FLOAT", "lengths": "DT_INT32"}
    assert default["inputs"]["features"]["tensor_shape"]["unknown_rank"] is True
    assert set(default["outputs"]) == {"probabilities", "class_id"}
    assert default["outputs"]["probabilities"]["tensor_shape"]["dim"][-1]["size"] == "3"
    assert set(sigs["embedding"]["outputs"]) == {"embedding"}
    recipe = json.load(open(model["base"] / "2" / "assets.extra" / "emobed_export.json"))
    assert body["metadata"]["emobed_export"] == recipe
    assert recipe["input_dim"] == DIM and recipe["task"] == "classification"
    # gRPC: the same, SignatureDefMap and a StringValue in Any
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = NAME
    req.metadata_field.append("signature_def")
    resp = _stub(server).GetModelMetadata(req, 30.0)
    assert resp.model_spec.version.value == 2
    grpc_sigs = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(grpc_sigs)
    sig = grpc_sigs.signature_def["serving_default"]
    assert sig.inputs["features"].dtype == tf.float32.as_datatype_enum
    assert set(sig.outputs) == {"probabilities", "class_id"}
    text = wrappers_pb2.StringValue()
    assert resp.metadata["emobed_export"].Unpack(text)
    assert json.loads(text.value) == recipe
    # version 1 has no assets.extra: no extra key
    code, body = _http("GET", f"{server.rest_url}/v1/models/{NAME}/versions/1/metadata")
    assert code == 200 and body["model_spec"]["version"] == "1"
    assert set(body["metadata"]) == {"signature_def"}
    req.model_spec.version.value = 1
    assert set(_stub(server).GetModelMetadata(req, 30.0).metadata) == {"signature_def"}
    # status
    code, body = _http("GET", f"{server.rest_url}/v1/models/{NAME}")
    assert code == 200
    assert [(s["version"], s["state"], s["status"]["error_code"])
            for s in body["model_version_status"]] == [("1", "AVAILABLE", "OK"),
                                                       ("2", "AVAILABLE", "OK")]
    code, body = _http("GET", f"{server.rest_url}/v1/models/{NAME}/versions/2")
    assert code == 200 and [s["version"] for s in body["model_version_status"]] == ["2"]


def test_bad_inputs_get_invalid_argument_with_the_graphs_message(server, model):
    import grpc

    url = f"{server.rest_url}/v1/models/{NAME}:predict"
    wrong = np.zeros((1, 3, 7), np.float32)
    code, body = _http("POST", url, {"inputs": {"features": wrong.tolist(), "lengths": [3]}})
    assert code == 400 and set(body) == {"error"}
    assert f"features must have {DIM} values per frame, got 7" in body["error"]
    code, body = _http("POST", url, {"instances": [{"features": wrong[0].tolist(),
                                                    "lengths": 3}]})
    assert code == 400 and f"features must have {DIM} values per frame, got 7" in body["error"]
    with pytest.raises(grpc.RpcError) as err:
        _stub(server).Predict(_predict_request(wrong, [3]), 30.0)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"features must have {DIM} values per frame, got 7" in err.value.details()
    # the graph's other checks come through too
    code, body = _http("POST", url, {"inputs": {"features": model["x"][:2].tolist(),
                                                "lengths": [5, 9]}})
    assert code == 400 and "lengths[1] = 9 is longer than the time axis" in body["error"]
    # requests TF Serving refuses before the graph
    for payload, words in [
            ({"inputs": {"features": model["x"].tolist()}}, "Missing named input: lengths"),
            ({"inputs": {}, "instances": []}, "only one of 'inputs' or 'instances'"),
            ({"signature_name": "serving_default"}, "Missing 'inputs' or 'instances' key"),
            ({"inputs": {"features": model["x"].tolist(), "lengths": [1.5, 1, 1]}},
             "is not of expected type: int32"),
            ({"signature_name": "nope", "inputs": {}}, 'signature key "nope" not found')]:
        code, body = _http("POST", url, payload)
        assert code == 400 and words in body["error"], (payload, body)
    req = _predict_request(model["x"], model["lengths"])
    del req.inputs["lengths"]
    with pytest.raises(grpc.RpcError) as err:
        _stub(server).Predict(req, 30.0)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Missing but required: {lengths}" in err.value.details()


def test_unknown_model_or_version_is_not_found(server, model):
    import grpc
    from tensorflow_serving.apis import get_model_metadata_pb2

    payload = {"inputs": {"features": model["x"].tolist(), "lengths": [5, 2, 1]}}
    code, body = _http("POST", f"{server.rest_url}/v1/models/nope:predict", payload)
    assert (code, body) == (404, {"error": "Servable not found for request: Latest(nope)"})
    code, body = _http("POST", f"{server.rest_url}/v1/models/{NAME}/versions/9:predict",
                       payload)
    assert (code, body) == (404, {"error": f"Servable not found for request: "
                                           f"Specific({NAME}, 9)"})
    for path in ("nope", "nope/metadata", f"{NAME}/versions/9", f"{NAME}/versions/9/metadata"):
        code, body = _http("GET", f"{server.rest_url}/v1/models/{path}")
        assert code == 404 and set(body) == {"error"}, (path, body)
    for name, version in (("nope", None), (NAME, 9)):
        with pytest.raises(grpc.RpcError) as err:
            _stub(server).Predict(_predict_request(model["x"], model["lengths"], name,
                                                   version), 30.0)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert "Servable not found for request" in err.value.details()
        req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        req.model_spec.name = name
        if version:
            req.model_spec.version.value = version
        with pytest.raises(grpc.RpcError) as err:
            _stub(server).GetModelMetadata(req, 30.0)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_specific_version_is_served_when_asked(server, model):
    import tensorflow as tf

    x, lengths, v1 = model["x"], model["lengths"], model["ref_v1"]
    assert not np.allclose(v1["probabilities"], model["ref"]["probabilities"], atol=1e-3)
    code, body = _http("POST", f"{server.rest_url}/v1/models/{NAME}/versions/1:predict",
                       {"inputs": {"features": x.tolist(), "lengths": lengths.tolist()}})
    assert code == 200, body
    np.testing.assert_allclose(body["outputs"]["probabilities"], v1["probabilities"], rtol=0,
                               atol=1e-6)
    resp = _stub(server).Predict(_predict_request(x, lengths, version=1), 30.0)
    assert resp.model_spec.version.value == 1
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["probabilities"]),
                               v1["probabilities"], rtol=0, atol=1e-6)
    resp = _stub(server).Predict(_predict_request(x, lengths, version=2), 30.0)
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["probabilities"]),
                               model["ref"]["probabilities"], rtol=0, atol=1e-6)


def test_cli_prints_the_addresses_serves_and_stops_on_ctrl_c(model, cli_process):
    line = cli_process.line()
    assert "emulation of TF Serving" in line and "not a replacement for TF Serving" in line
    rest = re.search(r"REST (http://127\.0\.0\.1:\d+)/v1/models/" + NAME, line).group(1)
    target = re.search(r"gRPC (127\.0\.0\.1:\d+)", line).group(1)
    code, body = _http("GET", f"{rest}/v1/models/{NAME}/metadata")
    assert code == 200 and body["metadata"]["emobed_export"]["input_dim"] == DIM

    class Target:
        grpc_target = target

    resp = _stub(Target).Predict(_predict_request(model["x"], model["lengths"]), 30.0)
    assert set(resp.outputs) == {"probabilities", "class_id"}
    cli_process.proc.send_signal(signal.SIGINT)
    code, out, err = cli_process.wait(60)
    assert code == 130, err[-2000:]
    # one line for Ctrl-C, no traceback (TensorFlow's native start-up chatter is dropped)
    assert err.strip().splitlines()[-1:] == ["loopback server stopped (Ctrl-C)"], err[-2000:]
    assert "Traceback" not in err and "oneDNN" not in err, err[-2000:]
    assert out.strip().splitlines() == [line.strip()]


def test_cli_help_and_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        loopback_main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "emulation of TF Serving" in text and "not a replacement for TF Serving" in text
    for flag in ("--model-base-path", "--model-name", "--rest-port", "--grpc-port"):
        assert flag in text
    assert loopback_main(["--model-base-path", str(tmp_path), "--rest-port", "0",
                          "--grpc-port", "0"]) == 2
    assert "no version folder" in capsys.readouterr().err


# --------------------------------------------------------------------------
# the README's and docs/serving.md's client snippets, run as written


def _serving_blocks(path, heading=None):
    """{language: [code]} of the fenced blocks of ``path`` (under ``heading`` if given)."""
    text = open(path, encoding="utf-8").read()
    if heading is not None:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        text = text[start:end if end > 0 else None]
    blocks = {}
    for lang, code in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        blocks.setdefault(lang, []).append(code)
    return blocks


def _client_snippets():
    """(rest, grpc) snippets of README's "Serving with TF Serving" and docs/serving.md."""
    rest, grpc_ = [], []
    for path, heading in ((os.path.join(ROOT, "README.md"), "## Serving with TF Serving"),
                          (os.path.join(ROOT, "docs", "serving.md"), None)):
        if not os.path.isfile(path):
            continue
        blocks = _serving_blocks(path, heading)
        found_rest = [c for c in blocks.get("bash", []) if "curl" in c]
        found_grpc = [c for c in blocks.get("python", []) if "PredictionServiceStub" in c]
        assert found_rest and found_grpc, f"{path}: no REST or gRPC client snippet"
        rest += [c for c in found_rest if c not in rest]
        grpc_ += [c for c in found_grpc if c not in grpc_]
    return rest, grpc_


def test_readme_client_snippets_run_as_written(server, model):
    rest, grpc_ = _client_snippets()
    # the only edits: the snippets' localhost ports become the server's free ports
    rest_host = server.rest_url.split("//", 1)[1]
    procs = [("rest", code, _Proc(["bash", "-euo", "pipefail", "-c",
                                   code.replace("localhost:8501", rest_host)]))
             for code in rest]
    procs += [("grpc", code, _Proc([sys.executable, "-c",
                                    code.replace("localhost:8500", server.grpc_target)]))
              for code in grpc_]
    for kind, code, proc in procs:
        rc, out, err = proc.wait(240)
        assert rc == 0, f"{kind} snippet failed:\n{code}\n{err[-2000:]}"
        if kind == "rest":  # columnar reply for one item, one frame of 88 values 0.1
            body = json.loads(out)
            ref = _reference(model["base"] / "2", features=np.full((1, 1, DIM), 0.1, np.float32),
                             lengths=np.array([1], np.int32))
            np.testing.assert_allclose(body["outputs"]["probabilities"], ref["probabilities"],
                                       rtol=0, atol=1e-6)
            np.testing.assert_array_equal(body["outputs"]["class_id"], ref["class_id"])
        else:  # prints the TensorProto of probabilities for zeros (1, 1, 88)
            assert "dtype: DT_FLOAT" in out, out
            got = [float(v) for v in re.findall(r"float_val: (\S+)", out)]
            ref = _reference(model["base"] / "2", features=np.zeros((1, 1, DIM), np.float32),
                             lengths=np.array([1], np.int32))
            np.testing.assert_allclose(got, ref["probabilities"].ravel(), rtol=0, atol=1e-6)
