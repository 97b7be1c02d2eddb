"""Feature extraction on Apache Beam (``--engine beam``).

The per-file work (decoding, openSMILE, face detection and encoding) fans out
over Beam workers; each result lands in the same per-item cache as the local
engine (``OUT/.work/``), and the launcher then writes the shards and the
manifest exactly as the local tool does, in input order, so both engines
produce the same records. The same pipeline runs on the DirectRunner (tested)
and on Dataflow, Flink or Spark (``-- --runner=...``); with a remote runner,
``--out`` must be a folder every worker can write (a shared file system).

openSMILE must not share a process with TensorFlow, so the audio DoFn keeps
one spawned helper process per worker; pretrained speech encoders (ct2, hf)
do the same, on batches of jobs (``BatchElements``), and keras-hub runs in
the worker like the face encoders. The per-item work and the cache are
the library's (``jobs``, ``workcache``), shared with the local engine.
"""

from __future__ import annotations

import multiprocessing as mp

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from tfrecords_tools.jobs import audio_job_args, make_encoder, store_audio_result, video_job
from tfrecords_tools.options import AudioOptions, VideoOptions
from tfrecords_tools.workcache import WorkCache


class AudioFn(beam.DoFn):
    """eGeMAPS functionals of one audio job into the cache."""

    def __init__(self, cache: WorkCache, audio: AudioOptions):
        self.cache = cache
        self.audio = audio
        self.done = Metrics.counter("emobed", "audio_items")
        self.failed = Metrics.counter("emobed", "audio_failures")

    def setup(self):
        self.pool = mp.get_context("spawn").Pool(1)

    def process(self, job):
        from tfrecords_tools.audio_features import _job

        (args,) = audio_job_args([job], self.audio)
        _, feats, err, _, notes = self.pool.apply(_job, (args,))
        if store_audio_result(self.cache, job, feats, err, notes):
            self.done.inc()
        else:
            self.failed.inc()

    def teardown(self):
        self.pool.close()
        self.pool.join()


class EncoderFn(beam.DoFn):
    """Pretrained speech-encoder features of a batch of audio jobs into the cache.

    ct2/hf encoders run in one spawned helper per worker (Torch and
    CTranslate2 kept out of a TensorFlow process); keras-hub in the worker
    itself, like the face encoders.
    """

    def __init__(self, cache: WorkCache, audio: AudioOptions):
        self.cache = cache
        self.audio = audio
        self.done = Metrics.counter("emobed", "audio_items")
        self.failed = Metrics.counter("emobed", "audio_failures")

    def setup(self):
        from tfrecords_tools import audio_features

        spec = audio_features.encoder_spec(self.audio.job_kwargs())
        self.pool = self.encoder = None
        if self.audio.encoder == "keras-hub":
            self.encoder = audio_features.init_encoder(spec)
        else:
            self.pool = mp.get_context("spawn").Pool(
                1, initializer=audio_features._encoder_worker_init, initargs=(spec,))

    def process(self, jobs):
        from tfrecords_tools.audio_features import encoder_batch

        args = audio_job_args(list(jobs), self.audio)
        results = (self.pool.apply(encoder_batch, (args,)) if self.pool is not None
                   else encoder_batch(args, self.encoder))
        by_key = {j.key: j for j in jobs}
        for key, feats, err, _, notes in results:
            if store_audio_result(self.cache, by_key[key], feats, err, notes):
                self.done.inc()
            else:
                self.failed.inc()

    def teardown(self):
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


class VideoFn(beam.DoFn):
    """Face descriptors of one video job into the cache."""

    def __init__(self, cache: WorkCache, video: VideoOptions):
        self.cache = cache
        self.video = video
        self.faceless = Metrics.counter("emobed", "frames_without_face")

    def setup(self):
        from tfrecords_tools import face

        self.pipe = face.FacePipeline(make_encoder(self.video), detect=self.video.detect)

    def process(self, job):
        self.faceless.inc(video_job(self.pipe, job, self.cache, self.video))


def run_beam(audio_jobs, video_jobs, cache: WorkCache, audio: AudioOptions,
             video: VideoOptions, stats: dict, beam_args=()) -> None:
    """Runs the pending jobs on Beam (``beam_args`` are its pipeline options)."""
    todo_a, todo_v = cache.pending(audio_jobs), cache.pending(video_jobs)
    stats["audio_already_done"] = len(audio_jobs) - len(todo_a)
    stats["video_already_done"] = len(video_jobs) - len(todo_v)
    stats["engine"] = "beam"
    if not todo_a and not todo_v:
        return
    options = PipelineOptions(list(beam_args) or ["--runner=DirectRunner"])
    pipeline = beam.Pipeline(options=options)
    if todo_a and audio.pretrained:
        audio.check()
        (pipeline | "audio jobs" >> beam.Create(todo_a) | "spread audio" >> beam.Reshuffle()
         | "batch audio" >> beam.BatchElements(min_batch_size=1,
                                               max_batch_size=int(audio.batch_size))
         | f"{audio.encoder} encoder" >> beam.ParDo(EncoderFn(cache, audio)))
    elif todo_a:
        (pipeline | "audio jobs" >> beam.Create(todo_a) | "spread audio" >> beam.Reshuffle()
         | "openSMILE" >> beam.ParDo(AudioFn(cache, audio)))
    if todo_v:
        (pipeline | "video jobs" >> beam.Create(todo_v) | "spread video" >> beam.Reshuffle()
         | "faces" >> beam.ParDo(VideoFn(cache, video)))
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query()["counters"]
    for c in counters:
        if c.key.metric.name == "frames_without_face":
            stats["frames_without_face"] += int(c.committed or c.attempted or 0)
