"""Checkpoint tensors read one at a time and written one at a time, so no model is ever held in memory.

safetensors files are read with positioned reads rather than mmap: pages of a mapped file count towards
the process's RSS for as long as the file stays mapped, a plain read does not. PyTorch `.bin` files
(original LLaVA and Vicuna ship these) are mapped one file at a time and mapped afresh after every
`BIN_REMAP_BYTES` read, which lets go of the pages already copied out.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .spec import AssemblyError

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_CODES = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
BIN_REMAP_BYTES = 256 << 20


@dataclass(frozen=True)
class TensorRef:
    """Where one stored tensor lives; `start`/`end` are absolute byte offsets in a safetensors file."""

    key: str
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int = 0
    end: int = 0


def read_safetensors_header(path: Path) -> list[TensorRef]:
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError) as error:
        raise AssemblyError(f"{path}: not a readable safetensors file ({error}); re-download or re-save it") from error
    base, size, refs = 8 + length, path.stat().st_size, []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if entry["dtype"] not in SAFETENSORS_DTYPES:
            raise AssemblyError(f"{path}: tensor {key} has dtype {entry['dtype']}, which this assembler does not read")
        start, end = (base + offset for offset in entry["data_offsets"])
        if end > size:
            raise AssemblyError(f"{path}: truncated (tensor {key} ends past the end of the file); re-download it")
        refs.append(TensorRef(key, path, SAFETENSORS_DTYPES[entry["dtype"]], tuple(entry["shape"]), start, end))
    return sorted(refs, key=lambda ref: ref.start)


def _read_exactly(path: Path, ref: TensorRef) -> torch.Tensor:
    tensor = torch.empty(ref.shape, dtype=ref.dtype)
    view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy()) if tensor.numel() else memoryview(b"")
    if len(view) != ref.end - ref.start:
        raise AssemblyError(f"{path}: tensor {ref.key} has {ref.end - ref.start} bytes for shape {ref.shape}; the file is damaged")
    with path.open("rb", buffering=0) as handle:
        handle.seek(ref.start)
        done = 0
        while done < len(view):
            count = handle.readinto(view[done:])
            if not count:
                raise AssemblyError(f"{path}: ended early while reading {ref.key}; re-download it")
            done += count
    return tensor


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError:  # the pre-1.6 (non-zip) format cannot be mapped
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise AssemblyError(f"{path}: not a readable PyTorch weights file ({error})") from error
    except Exception as error:
        raise AssemblyError(f"{path}: not a readable PyTorch weights file ({error})") from error


class WeightSource:
    """The tensors of one checkpoint, named by their stored keys, read on demand.

    Reading in `keys()` order touches each `.bin` file once; only one is mapped at a time.
    """

    def __init__(self, files: list[Path], origin: str):
        self.origin = origin  # how error messages name this source, e.g. "--llm /models/vicuna"
        self._refs: dict[str, TensorRef] = {}
        for file in files:
            for ref in self._scan(file):
                self._refs.setdefault(ref.key, ref)
        self._open_bin: tuple[Path, dict[str, torch.Tensor]] | None = None
        self._read_since_map = 0

    @staticmethod
    def _scan(file: Path) -> Iterator[TensorRef]:
        if file.suffix == ".safetensors":
            yield from read_safetensors_header(file)
            return
        state = _load_bin(file)
        if not isinstance(state, dict):
            raise AssemblyError(f"{file}: holds a {type(state).__name__}, not a state dict of tensors")
        for key, tensor in state.items():
            if isinstance(tensor, torch.Tensor):
                yield TensorRef(key, file, tensor.dtype, tuple(tensor.shape))
        del state

    def __iter__(self) -> Iterator[str]:
        """Stored keys, file by file in stored order."""
        return iter(self._refs)

    def __contains__(self, key: str) -> bool:
        return key in self._refs

    def ref(self, key: str) -> TensorRef:
        return self._refs[key]

    def read(self, key: str) -> torch.Tensor:
        ref = self._refs[key]
        if ref.file.suffix == ".safetensors":
            return _read_exactly(ref.file, ref)
        if self._open_bin is None or self._open_bin[0] != ref.file or self._read_since_map > BIN_REMAP_BYTES:
            self._open_bin = None  # unmap (dropping the pages copied so far) before mapping again
            self._open_bin = (ref.file, _load_bin(ref.file))
            self._read_since_map = 0
        tensor = self._open_bin[1][key].clone()
        self._read_since_map += tensor.numel() * tensor.element_size()
        return tensor

    def release(self) -> None:
        self._open_bin = None


def checkpoint_files(directory: Path, origin: str) -> list[Path]:
    """The weight files of a Hugging Face model directory, safetensors preferred, in index order."""
    for index_name in WEIGHT_INDEXES:
        index = directory / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            files = [directory / name for name in dict.fromkeys(weight_map.values())]
            missing = [file.name for file in files if not file.is_file()]
            if missing:
                raise AssemblyError(f"{origin}: {index} lists {', '.join(missing)}, which are missing; "
                                    "finish the download or re-save the model")
            return files
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return [directory / name]
    raise AssemblyError(f"{origin}: no weights in {directory} (looked for {', '.join(WEIGHT_INDEXES + WEIGHT_FILES)}); "
                        "give a Hugging Face model directory saved with save_pretrained")


def weight_source(path: Path, origin: str) -> WeightSource:
    """A source over a model directory, or over one weights file (e.g. mm_projector.bin)."""
    if path.is_file():
        if path.suffix not in {".safetensors", ".bin", ".pt", ".pth"}:
            raise AssemblyError(f"{origin} {path}: expected a .safetensors or .bin weights file")
        return WeightSource([path], origin)
    return WeightSource(checkpoint_files(path, origin), origin)


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of the output: its saved name, what it will be, and how to make it when its turn comes."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    make: Callable[[], torch.Tensor]

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * torch.empty((), dtype=self.dtype).element_size()


def _shards(planned: list[PlannedTensor], max_bytes: int) -> list[list[PlannedTensor]]:
    shards: list[list[PlannedTensor]] = [[]]
    size = 0
    for tensor in planned:
        if shards[-1] and size + tensor.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += tensor.nbytes
    return shards


def _write_shard(path: Path, tensors: list[PlannedTensor], progress) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for tensor in tensors:
        header[tensor.name] = {"dtype": DTYPE_CODES[tensor.dtype], "shape": list(tensor.shape),
                               "data_offsets": [offset, offset + tensor.nbytes]}
        offset += tensor.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep tensor data 8-byte aligned, as safetensors writes it
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for tensor in tensors:
            value = tensor.make()
            if value.dtype != tensor.dtype or tuple(value.shape) != tensor.shape:
                raise RuntimeError(f"{tensor.name}: made {value.dtype} {tuple(value.shape)}, "
                                   f"planned {tensor.dtype} {tensor.shape}")
            if value.numel():
                handle.write(memoryview(value.contiguous().reshape(-1).view(torch.uint8).numpy()))
            progress.update(tensor.nbytes)
            del value
        handle.flush()
        os.fsync(handle.fileno())


def write_safetensors(directory: Path, planned: list[PlannedTensor], max_shard_bytes: int, progress) -> int:
    """Write `planned` as (sharded) safetensors with an index, one tensor in memory at a time; return bytes."""
    shards = _shards(planned, max_shard_bytes)
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)])
    for name, tensors in zip(names, shards):
        _write_shard(directory / name, tensors, progress)
    total = sum(tensor.nbytes for tensor in planned)
    if len(shards) > 1:
        weight_map = {tensor.name: name for name, tensors in zip(names, shards) for tensor in tensors}
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return total
