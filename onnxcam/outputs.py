"""Where `onnxcam explain` writes: safe file names inside --out, no input overwritten, resumable runs.

Each image gets `<stem>_<method>.npy`, `<stem>_<method>.png` (and `<stem>_montage.png` for several
methods), written atomically, then one line in results.jsonl, written last: an image is complete when
its files exist and results.jsonl holds its record for the same settings, and a re-run skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from .errors import OnnxcamError
from .image import write_atomic

RESULTS = "results.jsonl"
MAX_STEM_BYTES = 120  # file names stay far below the usual 255-byte limit with a method name added


def safe_stem(name: str) -> str:
    """A file-name stem that cannot leave the folder or hide: word characters, '.', '-', '+' only; no leading dot."""
    stem = re.sub(r"[^\w.+-]", "_", name).lstrip(".") or "image"
    return stem.encode("utf-8")[:MAX_STEM_BYTES].decode("utf-8", "ignore")


def image_stems(images: list[Path]) -> dict[Path, str]:
    """One output stem per distinct image; images whose stems clash (a/cat.jpg, b/cat.png) get a path hash."""
    stems = {p: safe_stem(p.stem) for p in images}
    count: dict[str, int] = {}
    for s in stems.values():
        count[s.lower()] = count.get(s.lower(), 0) + 1  # case-insensitive file systems clash too
    return {p: s if count[s.lower()] == 1 else f"{s}-{hashlib.sha1(os.path.abspath(p).encode()).hexdigest()[:8]}"
            for p, s in stems.items()}


def planned_files(stem: str, methods) -> list[str]:
    names = [f"{stem}_{safe_stem(m)}{ext}" for m in methods for ext in (".npy", ".png")]
    return names + ([f"{stem}_montage.png"] if len(methods) > 1 else [])


def refuse_overwriting(out: Path, stems: dict[Path, str], methods, protected: list[Path]) -> None:
    """An output path must never be an input (an image named like an output, the model, in --out)."""
    inputs = {p.resolve(): p for p in protected}
    for stem in stems.values():
        for name in [*planned_files(stem, methods), RESULTS]:
            target = (out / name).resolve()
            if target in inputs:
                raise OnnxcamError(f"output {out / name} would overwrite the input {inputs[target]}; "
                                   "choose another --out folder")


def remove_stale_parts(out: Path) -> int:
    """Delete write_atomic's temporary files (.NAME.PID.XXXX.part) left by killed runs; live processes' stay."""
    removed = 0
    for p in out.glob(".*.part"):
        fields = p.name[: -len(".part")].rsplit(".", 2)
        if len(fields) != 3 or not fields[1].isdigit():  # not one of ours
            continue
        pid = int(fields[1])
        if pid != os.getpid() and _alive(pid):
            continue
        try:
            p.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def read_jsonl(path: Path, repair: bool = False) -> list[dict]:
    """The records of a JSONL file; a torn or malformed line (a killed run) is left out, and with `repair` dropped."""
    if not path.is_file():
        return []
    lines = path.read_bytes().splitlines(keepends=True)
    records, good = [], []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and line.endswith(b"\n"):
            records.append(record)
            good.append(line)
    if repair and len(good) != len(lines):
        write_atomic(path, b"".join(good))
    return records


def read_records(out: Path) -> list[dict]:
    """The records of results.jsonl, the file repaired of torn lines."""
    return read_jsonl(out / RESULTS, repair=True)


def recorded_images(records: list[dict], settings: dict) -> set[str]:
    """Absolute paths of the images results.jsonl has a record of for these settings."""
    return {os.path.abspath(str(r.get("image", ""))) for r in records if r.get("settings") == settings}


def is_complete(out: Path, image: Path, stem: str, methods, recorded: set[str]) -> bool:
    """All files of the image exist and results.jsonl has its record (see recorded_images)."""
    return os.path.abspath(image) in recorded and all((out / name).is_file() for name in planned_files(stem, methods))


def append_record(out: Path, record: dict) -> None:
    append_jsonl(out / RESULTS, record)


def append_jsonl(path: Path, record: dict) -> None:
    """One line appended with a single write (O_APPEND): concurrent runs and kills never interleave lines."""
    line = (json.dumps(record) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line from a killed run: end it first
            line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)


def top5(logits: np.ndarray, names: list[str] | None = None) -> list[dict]:
    """The five most probable classes of one image's logits: class, softmax probability, name when known."""
    z = np.asarray(logits, np.float64)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    return [{"class": int(c), "prob": round(float(probs[c]), 5), **({"name": names[c]} if names and c < len(names) else {})}
            for c in np.argsort(-probs)[:5]]


def metadata_labels(model_path: str | os.PathLike, props: dict[str, str]) -> Path | None:
    """The label file the model's onnxcam.labels metadata names, looked up beside the model (a bare name only)."""
    if "onnxcam.labels" not in props:
        return None
    candidate = Path(model_path).resolve().parent / Path(props["onnxcam.labels"]).name
    try:
        return candidate if candidate.is_file() else None
    except OSError:  # a hostile name (too long, odd bytes): no labels then
        return None
