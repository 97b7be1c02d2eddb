"""The work on one item, shared by the local engine and ``--engine beam``.

Every function here takes explicit options (``options.AudioOptions``,
``options.VideoOptions``) and a :class:`workcache.WorkCache`; each item's
result lands in the cache (features, or the failure with its reason). This
module imports neither TensorFlow nor openSMILE at import time.
"""

from __future__ import annotations

import sys

from tfrecords_tools.media import MediaError
from tfrecords_tools.options import INPUT_RANGES, AudioOptions, VideoOptions
from tfrecords_tools.workcache import WorkCache


def _progress(total, desc):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, dynamic_ncols=True)


def make_encoder(video: VideoOptions):
    """The face encoder ``video`` asks for (``face.VGGFaceEncoder``, ``KerasModelEncoder``, or
    ``image_encoders.KerasHubImageEncoder``/``OnnxImageEncoder``).

    >>> make_encoder(VideoOptions(encoder="keras", layer="feat"))
    Traceback (most recent call last):
    ...
    tfrecords_tools.face.WeightsError: --encoder keras needs --encoder-model FILE and --layer NAME
    """
    from tfrecords_tools import face

    video.check()
    if video.encoder == "vggface":
        return face.VGGFaceEncoder(video.vggface_weights, video.layer_name)
    if video.pretrained:
        from tfrecords_tools import image_encoders

        return image_encoders.load_encoder(video.encoder, video.encoder_model, video.layer,
                                           video.pool_name, video.image_size, video.image_mean,
                                           video.image_std, video.channel_order)
    return face.KerasModelEncoder(video.encoder_model, video.layer, video.pool_name,
                                  INPUT_RANGES[video.input_range])


def audio_job_args(jobs, audio: AudioOptions) -> list:
    """``(key, path, kwargs)`` tuples for ``audio_features.run_audio_jobs``.

    >>> from tfrecords_tools.corpora import Job
    >>> audio_job_args([Job("audio/a", "audio", "a.wav", "train", start=1.0)], AudioOptions())
    [('audio/a', 'a.wav', {'mode': 'utterance', 'window_s': 4.0, 'hop_s': 0.04,
                           'start_s': 1.0, 'end_s': None})]
    """
    kw = audio.job_kwargs()
    return [(j.key, j.path, {**kw, "start_s": j.start, "end_s": j.end}) for j in jobs]


def store_audio_result(cache: WorkCache, job, features, error, notes=()) -> bool:
    """Caches an audio job's features, or records its failure; True when it succeeded.

    >>> import tempfile
    >>> from tfrecords_tools.corpora import Job
    >>> cache = WorkCache(tempfile.mkdtemp())
    >>> job = Job("audio/a", "audio", "a.wav", "train")
    >>> store_audio_result(cache, job, None, "a.wav: no audio"), cache.failure(job)["reason"]
    (False, 'a.wav: no audio')
    """
    if error:
        cache.record_failure(job, error)
        return False
    cache.save(job, features, notes)
    return True


def video_job(pipe, job, cache: WorkCache, video: VideoOptions) -> int:
    """Extracts one clip (or image) into the cache, or records its failure.

    Returns the number of sampled frames without a face.

    >>> import tempfile
    >>> import numpy as np
    >>> from tfrecords_tools.corpora import Job
    >>> class Pipe:  # stands in for face.FacePipeline
    ...     def clip(self, path, frames, pool, hop, window):
    ...         return np.zeros((len(list(frames)), 4), "float32"), 0
    >>> cache = WorkCache(tempfile.mkdtemp())
    >>> job = Job("video/x", "video", "missing.png", "train")
    >>> video_job(Pipe(), job, cache, VideoOptions()), cache.failure(job)["reason"]
    (0, 'missing.png: file not found')
    """
    from tfrecords_tools.media import video_frames

    notes = []
    try:
        frames = ((t, f) for t, f in video_frames(job.path, video.fps, video.max_frames, notes)
                  if (job.start is None or t >= job.start) and (job.end is None or t <= job.end))
        feats, missing = pipe.clip(job.path, frames, video.pool, video.hop, video.window)
    except MediaError as err:
        cache.record_failure(job, str(err))
        return 0
    cache.save(job, feats, notes)
    return missing


def run_audio_jobs_for(args, audio: AudioOptions, workers: int = 1):
    """The runner of ``audio``'s jobs: openSMILE, or a pretrained encoder (batched).

    ct2 and hf encoders run in spawned workers; keras-hub (TensorFlow/Keras)
    in this process, as the face encoders do.
    """
    from tfrecords_tools import audio_features

    if not audio.pretrained:
        return audio_features.run_audio_jobs(args, workers)
    return audio_features.run_encoder_jobs(args, workers, in_process=audio.encoder == "keras-hub")


def run_audio_local(jobs, cache: WorkCache, audio: AudioOptions, workers: int, stats: dict):
    """Runs the pending audio jobs in spawned worker processes, caching each result."""
    todo = cache.pending(jobs)
    stats["audio_already_done"] = len(jobs) - len(todo)
    if not todo:
        return
    audio.check()
    by_key = {j.key: j for j in todo}
    what = (f"audio ({audio.encoder} encoder)" if audio.pretrained
            else "audio (openSMILE eGeMAPS)")
    with _progress(len(todo), what) as bar:
        for key, feats, err, secs, notes in run_audio_jobs_for(audio_job_args(todo, audio),
                                                               audio, workers):
            if store_audio_result(cache, by_key[key], feats, err, notes):
                stats["audio_seconds"] += secs
            bar.update(1)


def run_video_local(jobs, cache: WorkCache, video: VideoOptions, stats: dict):
    """Runs the pending video jobs in this process (one encoder), caching each result."""
    from tfrecords_tools import face

    todo = cache.pending(jobs)
    stats["video_already_done"] = len(jobs) - len(todo)
    if not todo:
        return
    pipe = face.FacePipeline(make_encoder(video), detect=video.detect)
    with _progress(len(todo), "video (faces)") as bar:
        for job in todo:
            stats["frames_without_face"] += video_job(pipe, job, cache, video)
            bar.update(1)
    stats["video_timing"] = pipe.timing
