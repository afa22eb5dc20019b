"""Memory, speed and detections of `predict` and the field runtime on one long recording: a trap records for days.

A recording of --hours (default 24) is generated in chunks with soundfile (so it never sits in memory): white
noise (standard deviation 0.02) with a 2 s flight tone (a 480 Hz harmonic stack) every 60 s from 10 s, its
amplitude cycling through TONE_LEVELS (signal-to-noise from easy to hard), 16 kHz mono 16-bit WAV, in --workdir
(default: the system temp folder), deleted at the end. Also a 30-minute recording and one 1-second clip, to
show that memory does not grow with the length. Each runs through
- `mosquito-ast predict` with a tiny member (--models, else one trained here on generated clips, 2 epochs),
- `mosquito-ast-lite` on that member's export (`mosquito-ast export`, fp32),
each in its own process with `--raven` and `--min-confidence 0` (the tiny member's species are not the point;
the presence gate's detections are): peak RSS (the process's ru_maxrss), windows/s, the real-time factor
(seconds of audio per second of wall time), and from the Raven table the tones found (overlapped by a
selection), missed, and the false selections (overlapping no tone), per tone level.

    python benchmarks/long_recording.py                 # 24 h, 30 min, 1 clip
    python benchmarks/long_recording.py --hours 2       # what fits a busy machine
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from _common import machine_report

RATE = 16000
TONE_HZ = 480.0  # Ae. aegypti's fundamental in `mosquito_ast.synth`
HARMONICS = (1.0, 0.55, 0.35, 0.20, 0.10)
TONE_LEVELS = (0.1, 0.01, 0.005, 0.003)  # the fundamental's amplitude, against noise of standard deviation 0.02
NOISE_SD = 0.02
CHUNK_SECONDS = 600


def snr_db(level: float) -> float:
    """The tone's power over the noise's, over the whole band."""
    return 10 * np.log10(level ** 2 / 2 * sum(a * a for a in HARMONICS) / NOISE_SD ** 2)


def tone_times(seconds: float, every: float = 60.0, length: float = 2.0) -> list[tuple[float, float, float]]:
    """(start, end, amplitude): one flight tone of `length` seconds every `every` seconds, starting 10 s in."""
    starts = np.arange(10.0, seconds - length, every)
    return [(start, start + length, TONE_LEVELS[i % len(TONE_LEVELS)]) for i, start in enumerate(starts)]


def write_recording(path: Path, seconds: float, seed: int = 0) -> list[tuple[float, float, float]]:
    """Noise with flight tones at known times, written a chunk at a time."""
    rng = np.random.default_rng(seed)
    tones = tone_times(seconds)
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16") as handle:
        for begin in np.arange(0.0, seconds, CHUNK_SECONDS):
            count = int(round(min(CHUNK_SECONDS, seconds - begin) * RATE))
            t = begin + np.arange(count) / RATE
            wave = NOISE_SD * rng.standard_normal(count)
            for start, end, level in (tone for tone in tones if tone[0] < t[-1] and tone[1] > begin):
                inside = (t >= start) & (t < end)
                wave[inside] += level * sum(a * np.sin(2 * np.pi * TONE_HZ * (k + 1) * t[inside])
                                              for k, a in enumerate(HARMONICS))
            handle.write(np.clip(wave, -1, 1).astype(np.float32))
    return tones


def measured(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of `command`, run in a fresh process that reports its child's peak."""
    probe = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)")
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - began
    peak_kb, code = done.stdout.split()[-2:]
    if code != "0":
        raise RuntimeError(f"{' '.join(command)} failed ({code}):\n{done.stderr[-2000:]}")
    return wall, int(peak_kb) / 1024


def tiny_member(work: Path) -> Path:
    """A tiny member trained on generated clips (2 epochs): speed and memory, not accuracy, are measured."""
    from mosquito_ast.commands.train import train
    from mosquito_ast.config import TrainParams
    from mosquito_ast.synth import generate_dataset

    generate_dataset(work / "synth" / "train", recordings_per_species=3, clips_per_recording=5, seed=1)
    generate_dataset(work / "synth" / "validation", recordings_per_species=1, clips_per_recording=5, seed=2,
                     first_recording=10)
    return train(TrainParams(train_dir=str(work / "synth" / "train"), validation_dir=str(work / "synth" / "validation"),
                             output=str(work / "member"), postfix="tiny", preset="tiny", epochs=2, batch_sizes=[8],
                             precision="32", progress=False, no_cache=True, seed=3, spectrum_forest=False))


def detection_counts(raven_table: Path, tones: list[tuple[float, float, float]]) -> dict:
    """Tones found (overlapped by a selection) and missed per level, and selections overlapping no tone."""
    with open(raven_table, newline="") as handle:
        selections = [(float(row["Begin Time (s)"]), float(row["End Time (s)"]))
                      for row in csv.DictReader(handle, delimiter="\t")]
    begins = np.array([b for b, _ in selections]), np.array([e for _, e in selections])
    found = {level: 0 for level in TONE_LEVELS}
    for start, end, level in tones:
        found[level] += bool(np.any((begins[0] < end) & (begins[1] > start)))
    starts, ends = np.array([t[0] for t in tones]), np.array([t[1] for t in tones])
    false = sum(1 for b, e in selections if not np.any((starts < e) & (ends > b)))
    per_level = {level: sum(1 for t in tones if t[2] == level) for level in TONE_LEVELS}
    return {"tones": len(tones), "found": sum(found.values()), "false_selections": false,
            "found_per_level": {f"{level:g}": f"{found[level]}/{per_level[level]}" for level in TONE_LEVELS}}


def run_case(name: str, recording: Path, seconds: float, tones: list, member: Path, export: Path,
             work: Path, presence_db: float) -> list[dict]:
    rows = []
    systems = {
        "predict (tool, tiny member)": [sys.executable, "-m", "mosquito_ast", "predict", str(recording), "--models",
                                        str(member), "--precision", "32", "--no-progress"],
        "mosquito-ast-lite (its export)": [sys.executable, "-m", "mosquito_ast_lite", str(export), str(recording),
                                           "--quiet"],
    }
    for system, command in systems.items():
        output, raven = work / f"{name}-{len(rows)}.csv", work / f"{name}-{len(rows)}-raven"
        wall, peak = measured([*command, "--min-confidence", "0", "--presence-db", str(presence_db), "--raven",
                               str(raven), "--output", str(output)])
        with open(output, newline="") as handle:
            (row,) = list(csv.DictReader(handle))
        windows = int(row["windows"])
        rows.append({"recording": name, "system": system, "windows": windows, "seconds": round(wall, 1),
                     "windows_per_s": round(windows / wall, 1), "real_time_factor": round(seconds / wall, 1),
                     "peak_rss_mb": round(peak), "windows_with_a_tone": int(row["detections"]),
                     **detection_counts(raven / f"{recording.stem}.selections.txt", tones)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--presence-db", type=float, default=6.0,
                        help="The presence gate's threshold (0: every window is scored, the slowest case).")
    parser.add_argument("--models", help="A member folder (default: a tiny one trained here).")
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="long-recording-", dir=args.workdir))
    try:
        member = Path(args.models) if args.models else tiny_member(work)
        export = work / "export"
        subprocess.run([sys.executable, "-m", "mosquito_ast", "export", "--models", str(member), "--output",
                        str(export), "--no-spectrum-forest"], check=True, capture_output=True)
        rows = []
        for name, seconds in (("1 clip", 1.0), ("30 min", 1800.0), (f"{args.hours:g} h", args.hours * 3600)):
            recording = work / f"{name.replace(' ', '_')}.wav"
            tones = write_recording(recording, seconds)
            rows += run_case(name, recording, seconds, tones, member, export, work, args.presence_db)
            recording.unlink()
        print(f"{machine_report()}\npresence gate {args.presence_db:g} dB; tones: one of 2 s every 60 s from 10 s ({TONE_HZ:g} Hz harmonic stack), fundamental "
              f"amplitude cycling {', '.join(f'{level:g} ({snr_db(level):+.1f} dB SNR)' for level in TONE_LEVELS)}, "
              f"in white noise of sd {NOISE_SD:g}")
        print("| recording | system | windows | windows/s | real-time factor | peak RSS (MB) | tones found | "
              "found per level | false selections |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
        for row in rows:
            levels = ", ".join(f"{k}: {v}" for k, v in row["found_per_level"].items())
            print(f"| {row['recording']} | {row['system']} | {row['windows']} | {row['windows_per_s']} | "
                  f"{row['real_time_factor']} | {row['peak_rss_mb']} | {row['found']}/{row['tones']} | {levels} | "
                  f"{row['false_selections']} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
