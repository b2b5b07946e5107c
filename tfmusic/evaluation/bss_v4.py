"""BSS Eval v4 (museval's default) computed in chunks: the same numbers, bounded memory, shared work.

museval's ``bss_eval`` (v4: time-invariant distortion filters estimated on the whole track, metrics
on windows) transforms every whole signal with one FFT of the next power of two above the track
length: for a 10-minute stereo song that is 2^25 points per channel and several GB of complex
spectra, and it recomputes the references' correlations for every estimate it is given. Here the
same quantities are accumulated chunk by chunk, so memory is set by the chunk, not the song:

1. ``q_pq(d) = sum_t x_p(t) x_q(t + d)`` for every pair of reference channels (target and rest,
   each channel) and lags ``|d| < L`` (``L`` = 512 filter taps), then the Gram matrix of the
   delayed references ``G[(p, a), (q, b)] = q_pq(a - b)``. It depends only on the references, so
   :class:`ReferenceModel` builds and factors it once per (song, target) and every method and
   oracle reuses it.
2. Per estimate: ``D[(p, k), c] = q_{p,e_c}(k)`` and the least-squares filters
   ``C = (G + eps I)^-1 D`` onto all references and ``Cj`` onto the target alone (museval's
   ``_compute_projection_filters``, same ``eps``).
3. Per window (batched, FFT convolution of the window with the filters, no context from outside
   the window, as museval): ``P_j`` = target projection, ``P`` = projection on both references;
   ``s_true`` = the window's target, ``e_spat = P_j - s_true``, ``e_interf = P - P_j``,
   ``e_artif = estimate - P``, and the image-variant SDR/ISR/SIR/SAR from their energies.

``tests/test_bss_v4.py`` checks it against ``museval.metrics.bss_eval`` on the same inputs.
Silent windows follow museval (NaN), except the rule of :data:`SILENT_ESTIMATE_DB`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.linalg

from tfmusic.evaluation.signals import CHUNK, museval_silent

FILTERS_LEN = 512
WINDOW_BATCH = 16  # windows projected per batch
#: A window where the target and the rest play but the estimate is all zeros has no projection on
#: the target: SDR, ISR and SI-SDR tend to -inf there and museval gives NaN, which would drop the
#: frame from the medians, so a method that silences a playing instrument would never pay for it.
#: tfmusic scores such a frame at this floor (SIR and SAR stay NaN: 0/0). Medians are rank
#: statistics, so any value below every frame a method really produces gives the same median.
SILENT_ESTIMATE_DB = -60.0

__all__ = ["FILTERS_LEN", "ReferenceModel", "SILENT_ESTIMATE_DB", "bss_eval_v4", "window_slices"]


def window_slices(n_samples: int, win: int, hop: int) -> list[slice]:
    """museval's framing: windows of ``win`` samples every ``hop``; one window if win >= length."""
    if win >= n_samples:
        return [slice(0, n_samples)]
    n = int(np.floor((n_samples - win + hop) / hop))
    return [slice(i * hop, min(i * hop + win, n_samples)) for i in range(n)]


def _rows(parts: tuple[np.ndarray, ...], a: int, b: int) -> np.ndarray:
    """Samples ``[a, b)`` of the channel-stacked ``parts`` as float64 (no whole-song copy)."""
    return np.concatenate([np.asarray(p[:, a:b], dtype=np.float64) for p in parts])


def _xcorr(x: tuple[np.ndarray, ...], y: tuple[np.ndarray, ...], lags: int, negative: bool) -> np.ndarray:
    """``r[a, b, d] = sum_t x[a, t] y[b, t + d]`` over the channels of the stacked ``x`` and ``y``
    parts, for ``d`` in ``[-(lags-1), lags-1]`` (``negative``) or ``[0, lags-1]``, accumulated over
    chunks of ``CHUNK`` samples (float64)."""
    n = x[0].shape[-1]
    lo = lags - 1 if negative else 0
    width = lo + lags
    out = np.zeros((sum(p.shape[0] for p in x), sum(p.shape[0] for p in y), width))
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        xa = _rows(x, start, stop)
        # y over [start - lo, stop + lags - 1), zero outside the signal
        ya = np.zeros((out.shape[1], stop - start + lo + lags - 1))
        a, b = max(0, start - lo), min(n, stop + lags - 1)
        ya[:, a - (start - lo):b - (start - lo)] = _rows(y, a, b)
        nfft = scipy.fft.next_fast_len(ya.shape[-1] + 1, real=True)
        fx = np.conj(scipy.fft.rfft(xa, nfft))
        fy = scipy.fft.rfft(ya, nfft)
        corr = scipy.fft.irfft(fx[:, None, :] * fy[None, :, :], nfft)
        out += corr[..., :width]
    return out


@dataclass
class ReferenceModel:
    """The factored Gram matrices of one target's delayed references on one song (target and rest):
    built once, shared by every estimate scored against them. It keeps no audio (a 10-minute song's
    rest is 200 MB); the same ``target`` and ``rest`` are passed again when scoring."""

    lu_all: tuple
    lu_target: tuple
    filters_len: int

    @classmethod
    def build(cls, target: np.ndarray, rest: np.ndarray, filters_len: int = FILTERS_LEN) -> "ReferenceModel":
        refs = (target, rest)  # channels source-major, then channel, as museval
        r = _xcorr(refs, refs, filters_len, negative=True)  # (2C, 2C, 2L-1)
        lag = np.arange(filters_len)
        diff = (lag[:, None] - lag[None, :]) + filters_len - 1  # a - b, shifted to an index
        p = r.shape[0]
        gram = r[:, :, diff].transpose(0, 2, 1, 3).reshape(p * filters_len, p * filters_len)
        eps = np.finfo(float).eps
        n_target = target.shape[0] * filters_len
        lu_all = scipy.linalg.lu_factor(gram + eps * np.eye(gram.shape[0]), check_finite=False)
        lu_target = scipy.linalg.lu_factor(gram[:n_target, :n_target] + eps * np.eye(n_target), check_finite=False)
        return cls(lu_all, lu_target, filters_len)

    def filters(self, target: np.ndarray, rest: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Projection filters of ``estimate`` on both references ``(2C, L, C)`` and on the target
        alone ``(C, L, C)``."""
        d = _xcorr((target, rest), (estimate,), self.filters_len, negative=False)  # (2C, C, L)
        rhs = d.transpose(0, 2, 1).reshape(-1, estimate.shape[0])
        n_target = target.shape[0] * self.filters_len
        c_all = scipy.linalg.lu_solve(self.lu_all, rhs, check_finite=False)
        c_target = scipy.linalg.lu_solve(self.lu_target, rhs[:n_target], check_finite=False)
        shape = (-1, self.filters_len, estimate.shape[0])
        return c_all.reshape(shape), c_target.reshape(shape)


def _project(windows: np.ndarray, spectra_filters: np.ndarray, nfft: int, length: int) -> np.ndarray:
    """Sum over reference channels of each window convolved with its filters: ``(batch, C, length)``.
    ``windows``: (P, batch, W); ``spectra_filters``: (P, C, nfft//2+1)."""
    fw = scipy.fft.rfft(windows, nfft)  # (P, batch, F)
    return scipy.fft.irfft(np.einsum("pbf,pcf->bcf", fw, spectra_filters), nfft)[..., :length]


def _db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den == 0, np.inf, 10 * np.log10(num / den))


def bss_eval_v4(model: ReferenceModel, target: np.ndarray, rest: np.ndarray, estimate: np.ndarray,
                win: int, hop: int) -> dict[str, np.ndarray]:
    """SDR/ISR/SIR/SAR per window of one target ``estimate`` ``(C, S)`` (museval v4, images variant,
    the target's row of ``bss_eval([target, rest], [estimate, rest])``); ``model`` is
    ``ReferenceModel.build(target, rest)``."""
    n = target.shape[-1]
    slices = window_slices(n, win, hop)
    out = {m: np.full(len(slices), np.nan) for m in ("SDR", "ISR", "SIR", "SAR")}
    playing = [not (museval_silent(target[:, s]) or museval_silent(rest[:, s])) for s in slices]
    scored = [i for i, s in enumerate(slices) if playing[i] and not museval_silent(estimate[:, s])]
    for i, s in enumerate(slices):
        if playing[i] and i not in scored:
            out["SDR"][i] = out["ISR"][i] = SILENT_ESTIMATE_DB
    if not scored:
        return out
    c_all, c_target = model.filters(target, rest, estimate)
    length_max = max(s.stop - s.start for s in slices) + model.filters_len - 1
    nfft = scipy.fft.next_fast_len(length_max, real=True)
    f_all = scipy.fft.rfft(c_all.transpose(0, 2, 1), nfft)  # (2C, C, F)
    f_target = scipy.fft.rfft(c_target.transpose(0, 2, 1), nfft)
    n_target = target.shape[0]
    for first in range(0, len(scored), WINDOW_BATCH):
        batch = scored[first:first + WINDOW_BATCH]
        # windows of unequal length (a track shorter than ``win``) are zero-padded to the batch's
        # longest; the padding adds nothing to any energy
        w = max(slices[i].stop - slices[i].start for i in batch)
        length = w + model.filters_len - 1

        def stack(x: np.ndarray) -> np.ndarray:
            arr = np.zeros((x.shape[0], len(batch), length))
            for k, i in enumerate(batch):
                seg = x[:, slices[i]]
                arr[:, k, :seg.shape[-1]] = seg
            return arr

        s_true, est = stack(target), stack(estimate)
        refs = np.concatenate([s_true, stack(rest)])[..., :w]
        p_all = _project(refs, f_all, nfft, length)
        p_target = _project(refs[:n_target], f_target, nfft, length)
        s_true, est = s_true.transpose(1, 0, 2), est.transpose(1, 0, 2)  # (batch, C, length)

        def energy(x: np.ndarray) -> np.ndarray:
            return np.sum(x * x, axis=(1, 2))

        e_true = energy(s_true)
        sdr = _db(e_true, energy(est - s_true))
        isr = _db(e_true, energy(p_target - s_true))
        sir = _db(energy(p_target), energy(p_all - p_target))
        sar = _db(energy(p_all), energy(est - p_all))
        for k, i in enumerate(batch):
            out["SDR"][i], out["ISR"][i], out["SIR"][i], out["SAR"][i] = sdr[k], isr[k], sir[k], sar[k]
    return out
