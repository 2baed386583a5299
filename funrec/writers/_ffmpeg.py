"""ffmpeg as a separate process: encoding from a pipe, decoding to a pipe, counting whole frames.

ffmpeg is started without ``preexec_fn``, so Python spawns it with vfork/exec and
runs no ``os.register_at_fork`` hooks (JAX's "os.fork() was called" warning is
one). Paths reach ffmpeg as ``file:`` URLs of absolute paths, so colons, a
leading ``-`` or ``%`` in a name are read as part of the name.
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import torch

_FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"
_PNG = "%06d.png"


def start(args: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Starts ffmpeg with ``args`` in its own session (Ctrl-C reaches Python, not ffmpeg)."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *args]
    return subprocess.Popen(command, start_new_session=True, **popen)


def url(path: Path, format: str) -> str:
    """The ffmpeg URL of a file, or of the frame pattern of a png folder."""
    absolute = os.path.abspath(path)
    if format == "png":  # image2 expands % sequences: escape the folder's own
        return "file:" + os.path.join(absolute.replace("%", "%%"), _PNG)
    return "file:" + absolute


def png_name(folder: Path, index: int) -> Path:
    """The file of frame ``index`` in a png folder."""
    return folder / (_PNG % index)


def encode_args(
    path: Path, format: str, fps: float, size: tuple[int, int], settings: dict[str, Any]
) -> list[str]:
    """ffmpeg arguments that read raw RGB frames of ``size`` (H, W) from stdin into ``path``."""
    if format == "mp4":
        out = ["-c:v", settings["codec"]]
        if settings["crf"] is not None:
            out += ["-crf", str(settings["crf"])]
        if settings["preset"] is not None:
            out += ["-preset", settings["preset"]]
        if settings["threads"] is not None:
            out += ["-threads", str(settings["threads"])]
        keyint = str(max(1, round(fps)))
        out += ["-pix_fmt", "yuv420p", "-g", keyint, "-movflags", _FRAGMENTED]
        out += ["-flush_packets", "1", "-f", "mp4"]  # each fragment reaches the disk
    elif format == "gif":
        # One palette per frame: streams (no whole-video buffering) and stays sharp. Each
        # frame is stored whole: the encoder's diffing against the previous frame compares
        # palette indices, which mean other colours under another palette.
        palette = (
            "split[a][b];[a]palettegen=stats_mode=single:reserve_transparent=0[p];"
            "[b][p]paletteuse=new=1"
        )
        out = ["-vf", palette, "-gifflags", "-offsetting-transdiff", "-flush_packets", "1"]
        out += ["-f", "gif"]
    else:  # png: 000000.png, 000001.png, ... each written whole, then renamed into place
        out = ["-f", "image2", "-start_number", "0", "-atomic_writing", "1"]
    rate = str(Fraction(fps).limit_denominator(1001))
    source = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[1]}x{size[0]}"]
    return ["-y", *source, "-framerate", rate, "-i", "pipe:0", *out, url(path, format)]


def failure(proc: subprocess.Popen[bytes], log: IO[bytes]) -> str:
    """ffmpeg's exit code and the last lines it wrote to ``log`` (its stderr)."""
    code = proc.wait()
    log.seek(0)
    lines = log.read().decode(errors="replace").strip().splitlines()
    return f"ffmpeg exited with code {code}: {' | '.join(lines[-5:]) or 'no message'}."


def decode(path: Path, format: str, limit: int | None, chunk: int) -> Iterator[torch.Tensor]:
    """Decodes a video to uint8 ``[n, H, W, 3]`` chunks of at most ``chunk`` frames.

    Each chunk is a view of one buffer that the next chunk overwrites. At most
    ``limit`` frames are decoded. Raises ``ValueError`` with ffmpeg's message when
    ffmpeg fails before decoding a frame.
    """
    before = ["-f", "image2", "-start_number", "0"] if format == "png" else []
    args = ["-nostdin", *before, "-i", url(path, format), "-map", "0:v:0"]
    args += ["-fps_mode", "passthrough"]
    if limit is not None:
        args += ["-frames:v", str(limit)]
    args += ["-f", "image2pipe", "-c:v", "pam", "-pix_fmt", "rgb24", "pipe:1"]
    with tempfile.TemporaryFile() as log:
        proc = start(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        decoded = 0
        try:
            assert proc.stdout is not None
            header = _pam_header(proc.stdout)
            if header is not None:
                size, (height, width) = header
                buffer = torch.empty(chunk, height, width, 3, dtype=torch.uint8)
                raw = buffer.numpy().data.cast("B")
                frame_bytes = height * width * 3
                next_header = memoryview(bytearray(size))
                n, more = 0, True
                while more:
                    more = _read_into(proc.stdout, raw[n * frame_bytes : (n + 1) * frame_bytes])
                    n += more
                    more = more and _read_into(proc.stdout, next_header)
                    if n == chunk or (n and not more):
                        decoded += n
                        yield buffer[:n]
                        n = 0
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
            failed = proc.wait() != 0
            if failed and not decoded:
                raise ValueError(
                    f"read_video({str(path)!r}): {failure(proc, log)} Is it a video file?"
                )


def _pam_header(stream: IO[bytes]) -> tuple[int, tuple[int, int]] | None:
    """Reads the first PAM header: (its length in bytes, (height, width)); None at EOF."""
    lines: dict[bytes, bytes] = {}
    size = 0
    while True:
        line = stream.readline()
        if not line:
            return None
        size += len(line)
        if line.strip() == b"ENDHDR":
            return size, (int(lines[b"HEIGHT"]), int(lines[b"WIDTH"]))
        key, _, value = line.strip().partition(b" ")
        lines[key] = value


def _read_into(stream: IO[bytes], view: memoryview) -> bool:
    """Fills ``view`` from ``stream``; False at end of file (a torn frame is not returned)."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            return False
        got += n
    return True


def count_packets(path: Path) -> int:
    """The number of video packets in a file, read without decoding (``-c copy``)."""
    args = ["-nostdin", "-nostats", "-i", url(path, "mp4"), "-map", "0:v:0", "-c", "copy"]
    args += ["-f", "null", "-progress", "pipe:1", "-"]
    proc = start(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, _ = proc.communicate()
    counts = [line for line in out.decode().splitlines() if line.startswith("frame=")]
    return int(counts[-1].split("=")[1]) if counts else 0


class WholeFrames:
    """Counts the whole frames a growing video file holds, reading only what is new.

    mp4: the samples of every fragment whose ``moof`` and ``mdat`` are complete
    (None if the file is not a fragmented mp4); gif: every image whose data and
    terminator are complete; png: the consecutive frame files present.
    """

    def __init__(self, path: Path, format: str) -> None:
        self.path = path
        self.format = format
        self.frames = 0
        self.offset = 0
        self.samples: int | None = None  # of the last moof, waiting for its mdat
        self.fragmented = True
        self.size = 0  # of the file when last read

    def count(self) -> int | None:
        """The number of whole frames in the file now."""
        if self.format == "png":
            while png_name(self.path, self.frames).exists():
                self.frames += 1
        elif self.format in ("mp4", "gif"):
            try:
                size = os.stat(self.path).st_size
                if size != self.size:  # read only when the file grew
                    self.size = size
                    with open(self.path, "rb") as file:
                        (self._mp4 if self.format == "mp4" else self._gif)(file)
            except FileNotFoundError:
                pass
        return self.frames if self.fragmented else None

    def _mp4(self, file: IO[bytes]) -> None:
        size = os.fstat(file.fileno()).st_size
        while self.offset + 8 <= size:
            file.seek(self.offset)
            head = file.read(16)
            box, kind = struct.unpack(">I4s", head[:8])
            if box == 1 and len(head) == 16:
                box = struct.unpack(">Q", head[8:])[0]
            if box < 8 or self.offset + box > size:
                return  # still being written (or to the end of the file)
            if kind == b"moof":
                file.seek(self.offset)
                self.samples = _trun_samples(file.read(box))
            elif kind == b"mdat":
                if self.samples is None:  # media before any fragment: a plain mp4
                    self.fragmented = False
                    return
                self.frames += self.samples
                self.samples = None
            self.offset += box

    def _gif(self, file: IO[bytes]) -> None:
        file.seek(self.offset)
        data = file.read()
        pos = 0
        if self.offset == 0:  # header, screen descriptor, global colour table
            if len(data) < 13:
                return
            pos = 13 + _colour_table(data[10])
        while pos < len(data):
            kind, end = data[pos], None
            if kind == 0x21:  # extension: label, then sub-blocks
                end = _sub_blocks(data, pos + 2)
            elif kind == 0x2C and pos + 10 <= len(data):  # image: descriptor, table, LZW data
                end = _sub_blocks(data, pos + 11 + _colour_table(data[pos + 9]))
            elif kind == 0x3B:  # trailer
                end = pos + 1
            if end is None:
                break
            self.frames += kind == 0x2C
            pos = end
        self.offset += pos


def _colour_table(packed: int) -> int:
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


def _sub_blocks(data: bytes, pos: int) -> int | None:
    """The offset after a chain of GIF sub-blocks starting at ``pos``; None if cut short."""
    while pos < len(data):
        if data[pos] == 0:
            return pos + 1
        pos += 1 + data[pos]
    return None


def _trun_samples(moof: bytes) -> int:
    """The number of samples in an mp4 ``moof`` box (summed over its ``trun`` boxes)."""
    samples, stack = 0, [(8, len(moof))]
    while stack:
        pos, end = stack.pop()
        while pos + 8 <= end:
            box, kind = struct.unpack(">I4s", moof[pos : pos + 8])
            if box < 8:
                break
            if kind == b"traf":
                stack.append((pos + 8, pos + box))
            elif kind == b"trun":
                samples += struct.unpack(">I", moof[pos + 12 : pos + 16])[0]
            pos += box
    return samples
