"""Feature extraction on Apache Beam (``--engine beam``).

The per-file work (decoding, openSMILE, face detection and encoding) fans out
over Beam workers; each result lands in the same per-item cache as the local
engine (``OUT/.work/``), and the launcher then writes the shards and the
manifest exactly as the local tool does, in input order, so both engines
produce the same records. The same pipeline runs on the DirectRunner (tested)
and on Dataflow, Flink or Spark (``-- --runner=...``); with a remote runner,
``--out`` must be a folder every worker can write (a shared file system).

openSMILE must not share a process with TensorFlow, so the audio DoFn keeps
one spawned helper process per worker.
"""

from __future__ import annotations

import multiprocessing as mp

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions


class AudioFn(beam.DoFn):
    """eGeMAPS functionals of one audio job into the cache."""

    def __init__(self, out: str, kw: dict):
        self.out = out
        self.kw = kw
        self.done = Metrics.counter("emobed", "audio_items")
        self.failed = Metrics.counter("emobed", "audio_failures")

    def setup(self):
        self.pool = mp.get_context("spawn").Pool(1)

    def process(self, job):
        from tfrecords_tools.audio_features import _job
        from tfrecords_tools.extract import _cache_path, _record_failure, _save_atomic

        kw = {**self.kw, "start_s": job.start, "end_s": job.end}
        _, feats, err, _ = self.pool.apply(_job, ((job.key, job.path, kw),))
        if err:
            _record_failure(self.out, job, err)
            self.failed.inc()
        else:
            _save_atomic(_cache_path(self.out, job), feats)
            self.done.inc()

    def teardown(self):
        self.pool.close()
        self.pool.join()


class VideoFn(beam.DoFn):
    """Face descriptors of one video job into the cache."""

    def __init__(self, out: str, opts: dict):
        self.out = out
        self.opts = opts
        self.faceless = Metrics.counter("emobed", "frames_without_face")

    def setup(self):
        import argparse

        from tfrecords_tools import face
        from tfrecords_tools.extract import make_encoder

        self.pipe = face.FacePipeline(make_encoder(argparse.Namespace(**self.opts)),
                                      detect=not self.opts["no_detect"])

    def process(self, job):
        from tfrecords_tools.extract import video_job

        self.faceless.inc(video_job(self.pipe, job, self.out, self.opts))


def run_beam(audio_jobs, video_jobs, out: str, opts: dict, stats: dict) -> None:
    """Runs the pending jobs on Beam (``opts['beam_args']`` are its pipeline options)."""
    from tfrecords_tools.extract import pending

    todo_a, todo_v = pending(audio_jobs, out), pending(video_jobs, out)
    stats["audio_already_done"] = len(audio_jobs) - len(todo_a)
    stats["video_already_done"] = len(video_jobs) - len(todo_v)
    if not todo_a and not todo_v:
        return
    kw = {"mode": opts["audio_mode"], "window_s": opts["window"], "hop_s": opts["hop"]}
    video_opts = {k: v for k, v in opts.items() if k != "beam_args"}
    options = PipelineOptions(opts.get("beam_args") or ["--runner=DirectRunner"])
    pipeline = beam.Pipeline(options=options)
    if todo_a:
        (pipeline | "audio jobs" >> beam.Create(todo_a) | "spread audio" >> beam.Reshuffle()
         | "openSMILE" >> beam.ParDo(AudioFn(out, kw)))
    if todo_v:
        (pipeline | "video jobs" >> beam.Create(todo_v) | "spread video" >> beam.Reshuffle()
         | "faces" >> beam.ParDo(VideoFn(out, video_opts)))
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query()["counters"]
    for c in counters:
        if c.key.metric.name == "frames_without_face":
            stats["frames_without_face"] += int(c.committed or c.attempted or 0)
    stats["engine"] = "beam"
