"""The start/stop context-manager protocol shared by the harness's processes."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StartStop:
    """``with X(...) as x:`` calls ``start()`` on entry and ``stop()`` on exit, always."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
