"""A data folder as the pipeline reads it: :class:`Source` (folder + manifest, optionally
partitioned by speaker) and its shards, checked against the manifest."""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

from emobed_tf.records import schema

from emobed_tf.records.manifest import Manifest, ModalityInfo, ShardInfo, load_manifest  # noqa: F401
from emobed_tf.records.schema import DataError


@dataclasses.dataclass(frozen=True)
class Source:
    """One modality's data: a data folder and its manifest.

    Audio and video may come from different folders (different corpora);
    they must agree on the task and the label set.

    ``speakers`` (set by :func:`fold_view`) assigns the partitions at read
    time: ``{split: speaker ids}``, every split reading the records of all
    the extraction's shards whose speaker is listed. ``None``: the splits
    written at extraction time.
    """

    data_dir: str
    manifest: Manifest
    speakers: Mapping[str, tuple] | None = None

    @classmethod
    def open(cls, data_dir: str) -> "Source":
        """The data folder ``data_dir`` with its checked manifest (raises DataError)."""
        return cls(data_dir, load_manifest(data_dir))

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.data_dir, schema.MANIFEST_NAME)

    def expected(self, modality: str) -> schema.Expected:
        """What this source's manifest promises about every record of ``modality``."""
        return schema.Expected.of(self.manifest, modality, self.data_dir)

    def speaker_filter(self, split: str):
        """The speaker ids ``split`` keeps, or None when it keeps every record read."""
        if self.speakers is None:
            return None
        return tuple(self.speakers.get(split, ()))


def all_shards(manifest: Manifest, modality: str) -> tuple:
    """Every shard of a modality (all extraction splits), each once, in manifest order."""
    seen, out = set(), []
    for shards in manifest.modalities[modality].shards.values():
        for sh in shards:
            if sh.path not in seen:
                seen.add(sh.path)
                out.append(sh)
    return tuple(out)


def shard_paths(source: Source, modality: str, split: str, required: bool = True) -> list:
    """Full paths of a modality's shards for ``split``, checked against the manifest.

    Missing files, and files whose size differs from the size recorded at
    writing time (truncated or rewritten), raise DataError naming the file.
    A modality or split the data set lacks raises DataError naming the
    manifest when ``required``, else gives ``[]``.

    >>> m = Manifest("toy", "classification", ("a", "b"), {"audio": ModalityInfo(dim=1)})
    >>> shard_paths(Source("/data/toy", m), "audio", "dev", required=False)
    []
    >>> shard_paths(Source("/data/toy", m), "audio", "dev")
    Traceback (most recent call last):
    ...
    emobed_tf.records.schema.DataError: /data/toy/manifest.json: data set 'toy' has no audio shards
    for split 'dev' (splits: [])
    """
    m = source.manifest
    where = source.manifest_path
    if modality not in m.modalities:
        if required:
            raise DataError(f"{where}: data set {m.name!r} has no {modality} features "
                            f"(it has: {sorted(m.modalities)})")
        return []
    shards = m.modalities[modality].shards.get(split, ())
    if not shards:
        if required:
            raise DataError(f"{where}: data set {m.name!r} has no {modality} shards for split "
                            f"{split!r} (splits: {sorted(m.modalities[modality].shards)})")
        return []
    paths = []
    for sh in shards:
        path = os.path.join(source.data_dir, sh.path)
        if not os.path.isfile(path):
            raise DataError(f"{path}: shard listed in the manifest is missing")
        size = os.path.getsize(path)
        if size != sh.bytes:
            raise DataError(f"{path}: shard is {size} bytes but was written with {sh.bytes} "
                            "(truncated or modified); regenerate it")
        paths.append(path)
    return paths


def check_compatible(sources: Mapping[str, Source]) -> Manifest:
    """The first source's manifest, after checking every source has its task and labels."""
    items = list(sources.items())
    first_mod, first = items[0]
    for mod, src in items[1:]:
        a, b = first.manifest, src.manifest
        if a.task != b.task or tuple(a.label_names) != tuple(b.label_names):
            raise DataError(
                f"{src.data_dir} ({mod}) and {first.data_dir} ({first_mod}) disagree on the "
                f"task or label set: {b.task} {list(b.label_names)} vs {a.task} "
                f"{list(a.label_names)}")
    return first.manifest
