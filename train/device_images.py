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


class UndecodableBatch(ValueError):
    """Not one image of a batch decodes (the batch is skipped)."""


class DeviceAugment:
    """Packed JPEG bytes -> a normalised image batch on ``device``, open_clip's train crop."""

    def __init__(
        self,
        image_size: tuple[int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: Any,
        dtype: Any = None,
        seed: int = 0,
    ) -> None:
        self.image_size = image_size
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.normalize = Normalize(mean, std, self.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.failed = 0

    def decode(self, packed: Any, offsets: Any) -> tuple[list[Any], list[int]]:
        """Decoded CHW uint8 images and the indices that could not be decoded."""
        from torchvision.io import ImageReadMode, decode_jpeg

        bounds = offsets.tolist()
        blobs = [packed[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
        device = self.device.type if self.device.type == "cpu" else self.device
        try:
            return decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device), []
        except RuntimeError:
            pass  # one bad JPEG fails the batched call: find it image by image
        images, bad = [], []
        for index, blob in enumerate(blobs):
            try:
                images.append(decode_jpeg(blob, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                images.append(None)
                bad.append(index)
        return images, bad

    def __call__(self, packed: Any, offsets: Any) -> tuple[Any, dict[int, int]]:
        """(images [B, 3, H, W] in ``dtype``, {undecodable sample: sample used instead}).

        An undecodable image is replaced by another image of the batch (the caller
        replaces its caption too), so the batch keeps its size: every process must
        contribute equally many features to the gathered contrastive batch.
        """
        images, bad = self.decode(packed, offsets)
        good = [i for i in range(len(images)) if images[i] is not None]
        if not good:
            raise UndecodableBatch(f"none of the {len(images)} JPEGs of a batch decodes")
        replaced = {index: good[index % len(good)] for index in bad}
        for index, source in replaced.items():
            images[index] = images[source]
        self.failed += len(bad)
        boxes = crop_boxes([tuple(img.shape[-2:]) for img in images], self.generator)
        out = torch.empty(
            (len(images), 3, *self.image_size), dtype=torch.float32, device=self.device
        )
        for index, (image, (top, left, height, width)) in enumerate(zip(images, boxes)):
            crop = image[None, :, top : top + height, left : left + width].float()
            out[index : index + 1] = F.interpolate(
                crop, size=self.image_size, mode="bicubic", antialias=True, align_corners=False
            )
        return self.normalize(out.clamp_(0, 255), self.dtype), replaced


class Prefetcher:
    """Prepares batches in a background thread (on its own CUDA stream) ``depth`` ahead.

    ``prepare`` turns one loader batch into ``(images, tokens, stats)`` on the device, or
    None to drop it. Exceptions in the thread are raised in the consumer.
    """

    _DONE = object()

    def __init__(
        self,
        batches: Iterator[Any],
        prepare: Callable[[Any], tuple[Any, ...]],
        device: Any,
        depth: int = 2,
    ) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.batches = batches
        self.prepare = prepare
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
                if item is not None:
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

    def __next__(self) -> tuple[Any, ...]:
        value = self.queue.get()
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
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.thread.join(timeout=5)
