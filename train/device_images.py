"""JPEG decode and open_clip's train augmentation on the accelerator, overlapped with the step.

On a GPU, PIL decode + open_clip's transform on the CPU caps throughput below what the model
can eat (ENVIRONMENT.md: ~4,300 images/s on 16 cores of the H100 machine). In ``device``
mode the data workers only pack JPEG bytes; here the batch is decoded with nvJPEG
(``torchvision.io.decode_jpeg`` on a list, one batched call), cropped and resized the way
open_clip's ``RandomResizedCrop`` does it (same scale and ratio ranges, bicubic with
antialiasing), normalised, and handed over. :class:`Prefetcher` runs this in a background
thread on its own CUDA stream, so the next batch is prepared while the current step runs.

The same code runs on the CPU (tests exercise it there); it only pays off on a GPU.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from openwit.errors import UserError
from openwit.train.preprocess import Normalize

log = logging.getLogger(__name__)

#: open_clip's train-time RandomResizedCrop ranges (AugmentationCfg and torchvision defaults).
CROP_SCALE = (0.9, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def crop_boxes(
    sizes: list[tuple[int, int]],
    generator: Any,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
    tries: int = 10,
) -> list[tuple[int, int, int, int]]:
    """RandomResizedCrop boxes ``(top, left, height, width)`` for images of ``sizes`` (h, w).

    The algorithm of torchvision's ``RandomResizedCrop.get_params``, drawn for the whole
    batch at once: ``tries`` candidates per image, the first that fits wins, else a centre
    crop clamped to the ratio range.
    """
    n = len(sizes)
    heights = torch.tensor([h for h, _ in sizes], dtype=torch.float64)
    widths = torch.tensor([w for _, w in sizes], dtype=torch.float64)
    area = (heights * widths)[:, None]
    u = torch.rand((n, tries, 4), generator=generator, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    crop_w = torch.round(torch.sqrt(target * aspect))
    crop_h = torch.round(torch.sqrt(target / aspect))
    fits = (crop_w > 0) & (crop_h > 0) & (crop_w <= widths[:, None]) & (crop_h <= heights[:, None])
    boxes = []
    for i, (h, w) in enumerate(sizes):
        hits = torch.nonzero(fits[i])
        if len(hits):
            t = int(hits[0])
            ch, cw = int(crop_h[i, t]), int(crop_w[i, t])
            top = int(u[i, t, 2] * (h - ch + 1))
            left = int(u[i, t, 3] * (w - cw + 1))
            boxes.append((min(top, h - ch), min(left, w - cw), ch, cw))
            continue
        in_ratio = w / h
        if in_ratio < ratio[0]:
            cw, ch = w, round(w / ratio[0])
        elif in_ratio > ratio[1]:
            ch, cw = h, round(h * ratio[1])
        else:
            ch, cw = h, w
        boxes.append(((h - ch) // 2, (w - cw) // 2, ch, cw))
    return boxes


class DeviceDecodeError(UserError):
    """The device's JPEG decoder is unusable here, or a whole batch failed to decode: the run
    stops with this one line rather than skipping batch after batch."""


def _decoder() -> Callable[..., Any]:
    """torchvision's ``decode_jpeg``, looked up at call time (tests swap in a failing one)."""
    import torchvision.io

    return torchvision.io.decode_jpeg


def _pil_decode(blob: torch.Tensor) -> torch.Tensor:
    """One JPEG decoded on the CPU with PIL, as a CHW uint8 tensor (PIL's error if not)."""
    import numpy as np

    from openwit.train.preprocess import decode_pil

    array = np.asarray(decode_pil(blob.numpy().tobytes()), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def probe_device_decode(device: Any, decoder: Callable[..., Any] | None = None) -> str | None:
    """None if ``decode_jpeg`` decodes a batch of two small JPEGs on ``device``, else why not
    (torchvision built without nvJPEG, no memory left, ...)."""
    import io

    from PIL import Image
    from torchvision.io import ImageReadMode

    device = torch.device(device)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "JPEG")
    blob = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    target = device.type if device.type == "cpu" else device
    try:
        decoded = (decoder or _decoder())([blob, blob], mode=ImageReadMode.RGB, device=target)
    except Exception as error:  # any failure means: not usable here
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
    if len(decoded) != 2 or tuple(decoded[0].shape) != (3, 16, 16):
        return "decode_jpeg returned something other than the images"
    return None


def choose_decode(requested: str, on_gpu: bool, probe: Callable[[], str | None]) -> str:
    """Where JPEGs are decoded: ``workers`` or ``device``. ``auto`` means the device on a
    GPU whose decoder works (``probe`` says why not), the data workers otherwise; an
    explicit ``device`` whose decoder does not work is a one-line error."""
    if requested == "workers" or (requested == "auto" and not on_gpu):
        return "workers"
    why = probe()
    if why is None:
        return "device"
    if requested == "auto":
        log.warning("the GPU cannot decode JPEGs here (%s): decoding in the data workers", why)
        return "workers"
    raise DeviceDecodeError(
        f"--decode device: the JPEG decoder does not work here ({why}); use --decode workers"
    )


class DeviceAugment:
    """Packed JPEG bytes -> a normalised image batch on ``device``, open_clip's train crop.

    An image the device decoder rejects is decoded on the CPU with PIL; one PIL cannot decode
    either is dropped: its row is zeros and ``valid`` is False there, which takes the pair
    out of the contrastive loss (as a positive and as a negative) while every process keeps
    its batch shape. No pair is ever duplicated to fill the gap (a duplicate would be a
    false negative). A decoder that fails on every image of a batch stops the run.
    """

    def __init__(
        self,
        image_size: tuple[int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: Any,
        dtype: Any = None,
        seed: int = 0,
        decoder: Callable[..., Any] | None = None,
    ) -> None:
        self.image_size = image_size
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.normalize = Normalize(mean, std, self.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.decoder = decoder
        self.cpu_decoded = 0  # images the device decoder rejected and PIL decoded
        self.failed = 0  # images no decoder could read (dropped)

    def decode(self, packed: Any, offsets: Any) -> list[Any]:
        """CHW uint8 images on the device, None where neither decoder can read the JPEG."""
        from torchvision.io import ImageReadMode

        decode_jpeg = self.decoder or _decoder()
        bounds = offsets.tolist()
        blobs = [packed[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
        device = self.device.type if self.device.type == "cpu" else self.device
        try:
            return list(decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device))
        except torch.OutOfMemoryError as error:
            raise DeviceDecodeError(
                f"out of device memory decoding a batch of {len(blobs)} JPEGs ({_line(error)}); "
                "use --decode workers or a smaller --batch-size"
            ) from None
        except RuntimeError:
            pass  # one bad JPEG fails the batched call: find it image by image
        images: list[Any] = []
        device_errors: list[str] = []
        for blob in blobs:
            try:
                images.append(decode_jpeg(blob, mode=ImageReadMode.RGB, device=device))
                continue
            except RuntimeError as error:
                device_errors.append(_line(error))
            try:
                images.append(_pil_decode(blob).to(self.device))
                self.cpu_decoded += 1
            except Exception:  # PIL raises many kinds for a broken image
                images.append(None)
        if len(device_errors) == len(blobs):  # not one image decoded on the device
            readable = sum(image is not None for image in images)
            if not readable:
                raise DeviceDecodeError(
                    f"none of the {len(blobs)} images of a batch decodes, on the device or "
                    f"with PIL (first error: {device_errors[0]}): are the shards' images "
                    "images?"
                )
            raise DeviceDecodeError(
                f"the device JPEG decoder failed on all {len(blobs)} images of a batch, "
                f"{readable} of which PIL decodes (first error: {device_errors[0]}); "
                "use --decode workers"
            )
        return images

    def __call__(self, packed: Any, offsets: Any) -> tuple[Any, Any, int]:
        """(images [B, 3, H, W] in ``dtype``, valid [B] bool on the device: False for a
        dropped image, the number dropped)."""
        images = self.decode(packed, offsets)
        valid = [image is not None for image in images]
        dropped = valid.count(False)
        self.failed += dropped
        sizes = [tuple(image.shape[-2:]) if image is not None else (1, 1) for image in images]
        boxes = crop_boxes(sizes, self.generator)
        out = torch.zeros(
            (len(images), 3, *self.image_size), dtype=torch.float32, device=self.device
        )
        for index, (image, (top, left, height, width)) in enumerate(zip(images, boxes)):
            if image is None:
                continue
            crop = image[None, :, top : top + height, left : left + width].float()
            out[index : index + 1] = F.interpolate(
                crop, size=self.image_size, mode="bicubic", antialias=True, align_corners=False
            )
        mask = torch.tensor(valid, dtype=torch.bool).to(self.device, non_blocking=True)
        return self.normalize(out.clamp_(0, 255), self.dtype), mask, dropped


def _line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


class Prefetcher:
    """Prepares batches in a background thread (on its own CUDA stream) ``depth`` ahead.

    ``prepare`` turns one loader batch into a tuple of tensors on the device. Exceptions in
    the thread are raised in the consumer. The consumer never waits unboundedly: it waits in
    steps of ``poll_s``, and a thread that has ended without handing anything over is an
    error, not a hang; a long wait for a live thread is logged every ``warn_after_s``.
    """

    _DONE = object()

    def __init__(
        self,
        batches: Iterator[Any],
        prepare: Callable[[Any], tuple[Any, ...]],
        device: Any,
        depth: int = 2,
        poll_s: float = 1.0,
        warn_after_s: float = 300.0,
    ) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.batches = batches
        self.prepare = prepare
        self.poll_s, self.warn_after_s = poll_s, warn_after_s
        self.thread = threading.Thread(target=self._run, name="openwit-prefetch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        if self.cuda:  # a new thread starts on cuda:0; this rank's GPU may be another
            torch.cuda.set_device(self.device)
        try:
            for batch in self.batches:
                if self.stop.is_set():
                    return
                if self.cuda:
                    with torch.cuda.stream(self.stream):
                        item = self.prepare(batch)
                        event = torch.cuda.Event()
                        event.record(self.stream)
                else:
                    item, event = self.prepare(batch), None
                self._put((item, event))
            self._put(self._DONE)
        except BaseException as error:  # handed to the consumer, which raises it
            self._put(error)

    def _put(self, value: Any) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Prefetcher:
        return self

    def _get(self) -> Any:
        """The next value from the thread; waits in bounded steps, never for a dead thread."""
        waited = 0.0
        while True:
            if self.stop.is_set():
                raise RuntimeError("the batch prefetch thread is not running (it was closed)")
            try:
                return self.queue.get(timeout=self.poll_s)
            except queue.Empty:
                pass
            if not self.thread.is_alive():
                try:  # it may have handed over its last value just before it ended
                    return self.queue.get_nowait()
                except queue.Empty:
                    raise RuntimeError(
                        "the batch prefetch thread is not running (it ended without a batch "
                        "or an error)"
                    ) from None
            waited += self.poll_s
            if waited >= self.warn_after_s:
                log.warning("waited %.0f s for a batch from the data workers", waited)
                waited = 0.0

    def __next__(self) -> tuple[Any, ...]:
        value = self._get()
        if value is self._DONE:
            raise StopIteration
        if isinstance(value, BaseException):
            raise value
        item, event = value
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for tensor in item:
                if isinstance(tensor, torch.Tensor) and tensor.is_cuda:
                    tensor.record_stream(current)  # freed only after the step used it
        return item

    def close(self) -> None:
        self.stop.set()
        self._drain()  # a producer blocked on a full queue sees the stop and ends
        self.thread.join(timeout=5)
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
