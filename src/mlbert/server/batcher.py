"""Micro-batching: concurrent requests gathered into one model batch, run on one worker thread.

On a CPU one batch of 64 costs far less than 64 batches of one, so requests that arrive within
`max_wait_ms` of each other share a batch (at most `max_batch` texts). The model runs off the event
loop, on a single thread, so the server keeps answering while it works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class MicroBatcher:
    """Queue of (texts, future); one loop turns the queue into model batches on one worker thread."""

    def __init__(
        self,
        score: Callable[[list[str]], np.ndarray],
        max_batch: int,
        max_wait_ms: float,
        enabled: bool,
        on_batch: Callable[[int], None] = lambda n: None,
    ):
        self.score, self.max_batch, self.max_wait = score, max_batch, max_wait_ms / 1000.0
        self.enabled, self.on_batch = enabled, on_batch
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlbert-infer")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is not None:
            await self._queue.put(None)
            await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str]) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, future))
        return await future

    async def run_alone(self, fn, *args):
        """`fn(*args)` on the inference thread, between batches: slow work (explanations) that must not
        compete with the batches for the CPU's cores."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _gather(self, first) -> tuple[list, bool]:
        """The first item plus whatever arrives within max_wait, up to max_batch texts -> (items, stop)."""
        items, n = [first], len(first[0])
        if not self.enabled:
            return items, False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while n < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if item is None:
                return items, True
            if n + len(item[0]) > self.max_batch:  # would overflow: it opens the next batch
                self._queue.put_nowait(item)  # goes to the back; the order of futures does not matter
                break
            items.append(item)
            n += len(item[0])
        return items, False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            items, stop = await self._gather(first)
            texts = [t for batch, _ in items for t in batch]
            self.on_batch(len(texts))
            try:
                probs = await loop.run_in_executor(self._executor, self.score, texts)
            except Exception as exc:  # noqa: BLE001 - the request fails, the server does not
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for batch, future in items:
                if not future.done():  # a client that went away cancelled its future
                    future.set_result(probs[start : start + len(batch)])
                start += len(batch)
        while stop and not self._queue.empty():  # requests that raced the stop: serve them too
            item = self._queue.get_nowait()
            if item is not None:
                texts, future = item
                try:
                    future.set_result(await loop.run_in_executor(self._executor, self.score, texts))
                except Exception as exc:  # noqa: BLE001 - as above
                    future.set_exception(exc)
