"""Voice profile: the acoustic cues that voice really carries about gender, age and size.

Praat (via parselmouth) measures pitch, formants and voicing on each 0.5 s block of speech;
the results are folded into running statistics (histograms and sums), so a session never
re-reads old audio and a block is analysed once whatever the chunking.

- F0: Praat's autocorrelation pitch (60–600 Hz, so children and raised voices fit).
  Median, lower quartile and p10–p90 spread come from a quarter-semitone histogram.
- Apparent vocal-tract length: formant dispersion ΔF from F1..F4 (Fitch 1997; Reby & McComb
  2003: F_i ≈ (2i-1)/2 · ΔF, VTL = c / 2ΔF, c = 35 000 cm/s). Noisy on real and telephone
  speech, so the decoder gives it little weight next to F0.
- Telephone band: a block whose energy above 4.1 kHz is under 0.01 % of its 0.3–3.4 kHz energy
  was band-limited (a phone line, a codec); where most blocks are, F4 sits at or beyond the
  cut-off and is unreliable, so the tract length is fitted on F1..F3 only.
- HNR from the autocorrelation strength r of voiced frames, 10·log10(r/(1-r)) — what Praat's
  harmonicity (ac) computes, without a second pass over the audio.
- Pitch perturbation: median relative change of F0 between consecutive voiced frames (a
  frame-level proxy for jitter; older voices score higher).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import parselmouth
from parselmouth.praat import call
from scipy.signal import resample_poly

from .choices import SAMPLE_RATE

F0_MIN, F0_MAX = 60.0, 600.0
ST_REF = 50.0  # Hz at bin 0
ST_BIN = 0.25  # semitones per histogram bin
N_ST_BINS = int(12 * np.log2(1000.0 / ST_REF) / ST_BIN)
SPEED_OF_SOUND_CM = 35_000.0
FORMANT_CEILING = 5500.0

BAND_CHECK_SAMPLES = 4096
_BAND_HZ = np.fft.rfftfreq(BAND_CHECK_SAMPLES, 1.0 / SAMPLE_RATE)
_HIGH_BINS = _BAND_HZ > 4100  # above an 8 kHz-sampled channel's Nyquist
_SPEECH_BINS = (_BAND_HZ > 300) & (_BAND_HZ < 3400)
_BAND_WINDOW = np.hanning(BAND_CHECK_SAMPLES)
#: measured on the dev set: 8 kHz-sampled recordings ≤ 2e-5, wideband speech blocks ≥ 5e-4 (p10)
NARROWBAND_RATIO = 1e-4

#: Order of the vector the face decoder takes (documented in decoder.py).
FEATURE_NAMES = ("f0_median_st", "f0_p25_st", "f0_spread_st", "vtl_cm", "hnr_db", "perturbation", "voiced_s", "speech_s")
N_FEATURES = len(FEATURE_NAMES)


def hz_to_st(hz: np.ndarray | float) -> np.ndarray:
    return 12.0 * np.log2(np.asarray(hz, dtype=np.float64) / ST_REF)


@dataclass
class VoiceProfile:
    """Running statistics over every analysed block of speech."""

    f0_hist: np.ndarray = field(default_factory=lambda: np.zeros(N_ST_BINS, np.float64))
    formant_sum: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float64))
    formant_n: int = 0
    hnr_sum: float = 0.0
    perturb: list[float] = field(default_factory=list)
    voiced_frames: int = 0
    speech_samples: int = 0
    blocks: int = 0
    narrowband_blocks: int = 0

    def add_block(self, pcm: np.ndarray) -> None:
        pcm = np.asarray(pcm, dtype=np.float64)
        self.speech_samples += len(pcm)
        if len(pcm) < int(0.1 * SAMPLE_RATE):
            return
        # the channel's band: a quarter second is plenty (Hann window: no leakage across 4 kHz)
        head = np.zeros(BAND_CHECK_SAMPLES)
        head[: min(len(pcm), BAND_CHECK_SAMPLES)] = pcm[:BAND_CHECK_SAMPLES]
        spec = np.abs(np.fft.rfft(head * _BAND_WINDOW)) ** 2
        self.blocks += 1
        self.narrowband_blocks += int(spec[_HIGH_BINS].sum() < NARROWBAND_RATIO * spec[_SPEECH_BINS].sum())
        sound = parselmouth.Sound(pcm, SAMPLE_RATE)
        pitch = sound.to_pitch_ac(time_step=0.01, pitch_floor=F0_MIN, pitch_ceiling=F0_MAX)
        arr = pitch.selected_array
        f0, strength = arr["frequency"], arr["strength"]
        voiced = f0 > 0
        if not voiced.any():
            return
        st = hz_to_st(f0[voiced])
        bins = np.clip((st / ST_BIN).astype(int), 0, N_ST_BINS - 1)
        np.add.at(self.f0_hist, bins, 1.0)
        r = np.clip(strength[voiced], 1e-3, 0.999)
        self.hnr_sum += float(np.sum(10.0 * np.log10(r / (1.0 - r))))
        self.voiced_frames += int(voiced.sum())
        both = voiced[1:] & voiced[:-1]
        if both.any():
            rel = np.abs(np.diff(f0))[both] / f0[1:][both]
            self.perturb.append(float(np.median(rel)))
        # Praat resamples to 2 × the formant ceiling with a slow sinc; a polyphase filter does the
        # same job in a tenth of the time, and Praat then skips its own resampling.
        narrow = parselmouth.Sound(resample_poly(pcm, 11, 16), 2 * FORMANT_CEILING)
        formants = narrow.to_formant_burg(time_step=0.02, max_number_of_formants=5, maximum_formant=FORMANT_CEILING)
        ftimes = np.asarray(formants.xs())
        tracks = np.stack([call(formants, "To Matrix", i).values[0] for i in (1, 2, 3, 4)], axis=1)
        # keep formant frames that fall on voiced pitch frames (vowels, not fricatives)
        voiced_times = np.asarray(pitch.xs())[voiced]
        near = (
            np.abs(ftimes[:, None] - voiced_times[None, :]).min(axis=1) <= 0.005
            if len(voiced_times)
            else np.zeros(len(ftimes), bool)
        )
        good = near & np.all(np.isfinite(tracks), axis=1) & np.all(tracks > 0, axis=1)
        if good.any():
            self.formant_sum += tracks[good].sum(axis=0)
            self.formant_n += int(good.sum())

    # --- derived values ---
    def f0_percentile(self, q: float, clean: bool = True) -> float:
        """Percentile in semitones re 50 Hz. ``clean`` drops frames more than 11.5 semitones from
        the median first (11.5: just inside an octave): Praat's octave (halving/doubling) errors land there, and a lower
        quartile is exactly what a burst of halved frames would drag down."""
        hist = self.f0_hist
        total = hist.sum()
        if total == 0:
            return float("nan")
        if clean:
            med = int(np.searchsorted(np.cumsum(hist), 0.5 * total))
            width = int(11.5 / ST_BIN)
            hist = hist.copy()
            hist[: max(0, med - width)] = 0
            hist[med + width + 1 :] = 0
            total = hist.sum()
        idx = int(np.searchsorted(np.cumsum(hist), q * total))
        return (idx + 0.5) * ST_BIN

    @property
    def vtl_cm(self) -> float:
        if self.formant_n < 5:
            return float("nan")
        mean = self.formant_sum / self.formant_n
        k = np.array([0.5, 1.5, 2.5, 3.5])
        if self.narrowband_blocks * 2 > self.blocks:  # telephone band: F4 is not to be trusted
            mean, k = mean[:3], k[:3]
        dispersion = float(mean @ k / (k @ k))  # least squares F_i = k_i ΔF through the origin
        return SPEED_OF_SOUND_CM / (2.0 * dispersion)

    def features(self) -> np.ndarray:
        """The decoder's input vector (FEATURE_NAMES order); NaN-free, with counts saying how much to trust it."""
        voiced_s = self.voiced_frames * 0.01
        if self.voiced_frames == 0:
            return np.array([0.0] * (N_FEATURES - 1) + [self.speech_samples / SAMPLE_RATE], np.float32)
        med = self.f0_percentile(0.5)
        spread = self.f0_percentile(0.9) - self.f0_percentile(0.1)
        vtl = self.vtl_cm
        return np.array(
            [
                med,
                self.f0_percentile(0.25),
                spread,
                0.0 if not np.isfinite(vtl) else vtl,
                self.hnr_sum / self.voiced_frames,
                float(np.median(self.perturb)) if self.perturb else 0.0,
                voiced_s,
                self.speech_samples / SAMPLE_RATE,
            ],
            np.float32,
        )
