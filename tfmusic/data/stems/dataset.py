"""tf.data pipelines over preprocessed stems: training (random segments, Open-Unmix augmentation) and eval.

Both yield ``(mixture (B, C, S), target (B, C, S), activity (B, T))`` float32 with
``S = round(segment_seconds * 44100)`` and ``T = 1 + (S - 4096) // 1024`` (6 s -> 264600 / 255).
``activity`` is the target's MedleyDB confidence (computed from the un-augmented stem) binarized
at 0.5. Segment crops start on the 1024-sample hop grid, so label frames stay aligned with the
``center=False`` STFT frames of the crop.

Augmentation (``augment=True``), as Open-Unmix's random-mix training: segments are shuffled and
taken in groups of ``MIX_GROUP``; every instrument of the taxonomy gets its own random crop, a
random gain in U[0.25, 1.25] and (stereo) a random channel swap, and is then drawn from an
independently permuted member of the group (so stems are mixed across songs, and every stem of a
group is used exactly once); the mixture is re-summed from the augmented stems. Each record is read
once per pass, not once per instrument. Determinism: with a ``seed`` and
``deterministic=True``, two pipelines built the same way yield identical batches.

``pitch=True`` (the IASS+pitch task) appends the target's multi-pitch roll ``(B, T, 88)`` and a
``(B,)`` flag that is 1 where the record has pitch labels (:mod:`tfmusic.data.stems.pitch`; 0 for
real datasets, drums and version-1 records), cropped and permuted with the target stem.
"""

from __future__ import annotations

from pathlib import Path

from tfmusic.data.stems import activity, taxonomy
from tfmusic.data.stems import augment as augment_ops
from tfmusic.data.stems.augment import Augmentation
from tfmusic.data.stems.splits import SPLITS, read_manifest

GAIN_RANGE = (0.25, 1.25)
DEFAULT_SHUFFLE_BUFFER = 32
MIX_GROUP = 8  # segments whose stems are permuted across each other for cross-song mixing


def _dataset_files(data_dir: str | Path, split: str) -> tuple[dict, list[str]]:
    from tfmusic.data.stems.preprocess import DATASET_NAME
    from tfmusic.data.tfds_metadata import list_shards

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    manifest = read_manifest(data_dir)
    if manifest["splits"][split]["segments"] == 0:
        raise ValueError(f"{data_dir}: split {split!r} holds no segments (songs: {manifest['splits'][split]['songs']})")
    return manifest, [str(p) for p in list_shards(data_dir, DATASET_NAME, split)]


def _check_args(manifest: dict, target: str, batch_size: int, segment_seconds: float, channels: int) -> tuple[int, int]:
    if target not in taxonomy.INSTRUMENTS:
        raise ValueError(f"target must be one of {taxonomy.INSTRUMENTS}, got {target!r}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 (mono = mean of channels) or 2, got {channels}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rate = manifest["config"]["sample_rate"]
    samples = int(round(segment_seconds * rate))
    if samples < activity.WIN:
        raise ValueError(f"segment_seconds={segment_seconds} is shorter than one STFT frame ({activity.WIN} samples)")
    if samples > manifest["segment_samples"]:
        raise ValueError(f"segment_seconds={segment_seconds} exceeds the stored segments "
                         f"({manifest['segment_samples'] / rate:.3f} s); preprocess with a longer --segment-seconds")
    return samples, activity.num_frames(samples)


class _Codec:
    """Parse + decode helpers bound to one manifest (PCM dtype, stored segment shape)."""

    def __init__(self, manifest: dict, channels: int):
        self.pcm_dtype = manifest["config"]["pcm_dtype"]
        self.samples = int(manifest["segment_samples"])
        self.frames = int(manifest["segment_frames"])
        self.channels = channels

    def parse(self, serialized, keys: list[str]):
        import tensorflow as tf

        from tfmusic.data import schema

        spec = schema.stems_parse_spec(taxonomy.INSTRUMENTS)
        wanted = {k: spec[k] for k in ["channels", "scale", "valid_samples"] + keys}
        return tf.io.parse_single_example(serialized, wanted)

    def audio(self, raw, ch, scale):
        import tensorflow as tf

        samples = self.samples

        def decode():
            if self.pcm_dtype == "int16":
                x = tf.cast(tf.io.decode_raw(raw, tf.int16, little_endian=True), tf.float32) / 32768.0
            else:
                x = tf.io.decode_raw(raw, tf.float32, little_endian=True)
            return tf.reshape(x, tf.stack([ch, samples])) / scale

        x = tf.cond(tf.strings.length(raw) > 0, decode, lambda: tf.zeros(tf.stack([ch, samples])))
        if self.channels == 1:
            x = tf.reduce_mean(x, axis=0, keepdims=True)
        else:
            x = tf.cond(ch == 1, lambda: tf.concat([x, x], axis=0), lambda: x)
        return tf.reshape(x, [self.channels, samples])

    def pitch(self, raw):
        from tfmusic.data.stems.pitch import tf_unpack

        return tf_unpack(raw, self.frames)

    def confidence(self, raw):
        import tensorflow as tf

        frames = self.frames
        c = tf.cond(tf.strings.length(raw) > 0,
                    lambda: tf.io.decode_raw(raw, tf.float32, little_endian=True),
                    lambda: tf.zeros([frames]))
        return tf.reshape(c, [frames])


def _slice(audio, m, samples: int):
    """``audio[:, m*1024 : m*1024 + samples]`` with a static shape (tf.slice keeps sizes known)."""
    import tensorflow as tf

    return tf.slice(audio, tf.stack([0, m * activity.HOP]), [audio.shape[0], samples])


def _crop(audio, conf, m, samples: int, frames: int):
    import tensorflow as tf

    return _slice(audio, m, samples), tf.slice(conf, tf.reshape(m, [1]), [frames])


def _crop_roll(roll, m, frames: int):
    """``roll[m : m + frames]`` of a ``(stored frames, 88)`` pitch roll."""
    import tensorflow as tf

    return tf.slice(roll, tf.stack([m, 0]), [frames, roll.shape[1]])


def make_dataset(
    data_dir: str | Path,
    split: str,
    target: str,
    batch_size: int,
    *,
    segment_seconds: float = 6.0,
    channels: int = 1,
    augment: bool = True,
    seed: int | None = None,
    deterministic: bool = False,
    samples_per_epoch: int | None = None,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    pitch: bool = False,
    augmentation: "Augmentation | None" = None,
):
    """Training batches ``(mixture, target, activity)`` of random segments from ``split``
    (``pitch=True``: ``+ (pitch roll, pitch known)``, module docstring). With ``augment``,
    ``augmentation`` says which of :mod:`tfmusic.data.stems.augment` apply (default: all).

    One pass over the returned dataset is one epoch of ``samples_per_epoch`` examples (default: the
    split's stored segment count), batched with ``drop_remainder=True``. Iterating again draws new
    random segments. ``deterministic=True`` (seed defaults to 0) makes the batch sequence a pure
    function of the seed.
    """
    import tensorflow as tf

    manifest, files = _dataset_files(data_dir, split)
    samples, frames = _check_args(manifest, target, batch_size, segment_seconds, channels)
    codec = _Codec(manifest, channels)
    aug = augmentation or Augmentation()
    rate = int(manifest["config"]["sample_rate"])
    if deterministic and seed is None:
        seed = 0
    n_records = int(manifest["splits"][split]["segments"])
    epoch = int(samples_per_epoch) if samples_per_epoch is not None else n_records
    if epoch < batch_size:
        raise ValueError(f"samples_per_epoch={epoch} is smaller than batch_size={batch_size}")
    max_m = (codec.samples - samples) // activity.HOP
    buffer = max(1, min(shuffle_buffer, n_records))
    group = max(1, min(MIX_GROUP, n_records))
    autotune = tf.data.AUTOTUNE
    insts = taxonomy.INSTRUMENTS
    t_index = insts.index(target)
    keys = ["mixture"] if not augment else []
    keys += [f"stem/{i}" for i in (insts if augment else (target,))]
    keys += [f"activity/{i}" for i in (insts if augment else (target,))]
    keys += [f"pitch/{target}"] if pitch else []

    def random_stream(k: int):
        """Seeds for stateless ops; new numbers on every pass, the same passes for the same seed."""
        return tf.data.Dataset.random(seed=None if seed is None else seed * 1000 + k, rerandomize_each_iteration=True)

    ds = tf.data.TFRecordDataset(files)
    # repeat, then shuffle: the shuffle's seed generator advances once per pass over this dataset. Shuffling
    # before the repeat re-seeded it at every inner epoch, and how many inner epochs the parallel map and
    # prefetch had read ahead of take(epoch) varied, so a pass's order (and a resumed run) was not reproducible.
    ds = ds.repeat().shuffle(buffer, seed=None if seed is None else seed * 1000 + 1, reshuffle_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, random_stream(2)))

    def crop_offset(key):
        return tf.random.stateless_uniform([], seed=key, minval=0, maxval=max_m + 1, dtype=tf.int32)

    def per_record(serialized, r):
        """Parse one segment; without augmentation: (mixture, target, confidence) on one shared crop."""
        ex = codec.parse(serialized, keys)
        base = tf.stack([tf.cast(r, tf.int64), tf.constant(0, tf.int64)])
        if not augment:
            m = crop_offset(base)
            mix = _slice(codec.audio(ex["mixture"], ex["channels"], ex["scale"]), m, samples)
            stem, conf = _crop(codec.audio(ex[f"stem/{target}"], ex["channels"], ex["scale"]),
                               codec.confidence(ex[f"activity/{target}"]), m, samples, frames)
            if pitch:
                roll, known = codec.pitch(ex[f"pitch/{target}"])
                return mix, stem, conf, _crop_roll(roll, m, frames), known
            return mix, stem, conf
        stems, confs, extra = [], [], ()
        for j, inst in enumerate(insts):  # own crop, gain and channel swap per source (Open-Unmix)
            key = base + tf.constant([0, 1 + j], tf.int64)
            m = crop_offset(key)
            stem, conf = _crop(codec.audio(ex[f"stem/{inst}"], ex["channels"], ex["scale"]),
                               codec.confidence(ex[f"activity/{inst}"]), m, samples, frames)
            if pitch and j == t_index:  # the target's roll follows the target's crop
                roll, known = codec.pitch(ex[f"pitch/{inst}"])
                extra = (_crop_roll(roll, m, frames), known)
            stem = stem * tf.random.stateless_uniform([], seed=key + [0, 100], minval=GAIN_RANGE[0],
                                                      maxval=GAIN_RANGE[1])
            stem = augment_ops.random_eq(stem, key + [0, 300], aug.eq, aug.eq_db, rate)
            if channels == 2:
                flip = tf.random.stateless_uniform([], seed=key + [0, 200]) < 0.5
                stem = tf.cond(flip, lambda: tf.reverse(stem, axis=[0]), lambda: stem)
            stems.append(stem)
            confs.append(conf)
        return (tf.stack(stems), tf.stack(confs)) + extra

    ds = ds.map(per_record, num_parallel_calls=autotune, deterministic=deterministic or seed is not None)
    if augment:
        # Cross-song mixing: within a group of shuffled segments every instrument is drawn from an
        # independently permuted segment, then the mixture is re-summed from the augmented stems.
        ds = tf.data.Dataset.zip((ds.batch(group, drop_remainder=True), random_stream(3)))

        def mix_group(batch, r):
            stems, confs = batch[0], batch[1]
            parts, conf_t, extra = [], None, ()
            for j in range(len(insts)):
                key = tf.stack([tf.cast(r, tf.int64), tf.constant(j, tf.int64)])
                perm = tf.argsort(tf.random.stateless_uniform([group], seed=key)) if aug.remix else tf.range(group)
                parts.append(tf.gather(stems[:, j], perm))
                if j == t_index:
                    conf_t = tf.gather(confs[:, j], perm)
                    extra = tuple(tf.gather(x, perm) for x in batch[2:])  # pitch roll + known
            mix, target_audio = tf.add_n(parts), parts[t_index]
            if aug.limiter > 0:  # one gain curve per mixture of the group (LimitAug)
                keys = tf.stack([tf.fill([group], tf.cast(r, tf.int64)), tf.range(100, 100 + group, dtype=tf.int64)], 1)
                mix, target_audio = tf.map_fn(
                    lambda a: _limited(a[0], a[1], a[2]), (mix, target_audio, keys),
                    fn_output_signature=(tf.float32, tf.float32))
            return (mix, target_audio, conf_t) + extra

        def _limited(mixture, target_audio, key):
            limited, (limited_target,) = augment_ops.random_limiter(mixture, [target_audio], key, aug.limiter,
                                                                    list(aug.limiter_drive_db))
            return limited, limited_target

        ds = ds.map(mix_group, num_parallel_calls=autotune, deterministic=deterministic or seed is not None)
        ds = ds.unbatch()
    ds = ds.map(lambda mix, tgt, conf, *extra: (mix, tgt, tf.cast(conf >= activity.THRESHOLD, tf.float32)) + extra)
    ds = ds.take(epoch).batch(batch_size, drop_remainder=True).prefetch(autotune)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return ds.with_options(options)


def make_eval_dataset(
    data_dir: str | Path,
    split: str,
    target: str,
    batch_size: int,
    *,
    segment_seconds: float = 6.0,
    channels: int = 1,
    pitch: bool = False,
):
    """Evaluation batches without augmentation: every record cut into consecutive hop-aligned crops
    (``pitch=True``: ``+ (pitch roll, pitch known)`` as :func:`make_dataset`).

    Order is fixed (shards, then records, then crops); crops that start in a song's zero padding are
    skipped. The last batch may be smaller.
    """
    import tensorflow as tf

    manifest, files = _dataset_files(data_dir, split)
    samples, frames = _check_args(manifest, target, batch_size, segment_seconds, channels)
    codec = _Codec(manifest, channels)
    rate = int(manifest["config"]["sample_rate"])
    stride_m = max(1, samples // activity.HOP)
    n_crops = 1 + (codec.samples - samples) // (stride_m * activity.HOP)
    stem_key, act_key, pitch_key = f"stem/{target}", f"activity/{target}", f"pitch/{target}"

    def crops(serialized):
        ex = codec.parse(serialized, ["mixture", stem_key, act_key] + ([pitch_key] if pitch else []))
        roll, known = codec.pitch(ex[pitch_key]) if pitch else (None, None)
        mix = codec.audio(ex["mixture"], ex["channels"], ex["scale"])
        stem = codec.audio(ex[stem_key], ex["channels"], ex["scale"])
        conf = codec.confidence(ex[act_key])
        ms = tf.range(n_crops, dtype=tf.int32) * stride_m
        ms = tf.boolean_mask(ms, tf.cast(ms, tf.int64) * activity.HOP < ex["valid_samples"])

        def one(m):
            s, c = _crop(stem, conf, m, samples, frames)
            out = (_slice(mix, m, samples), s, tf.cast(c >= activity.THRESHOLD, tf.float32))
            return out + ((_crop_roll(roll, m, frames), known) if pitch else ())

        return tf.data.Dataset.from_tensor_slices(ms).map(one)

    ds = tf.data.TFRecordDataset(files).flat_map(crops)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
