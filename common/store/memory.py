"""How much memory Redis holds against its `maxmemory` (0: no limit)."""

from dataclasses import dataclass
from typing import Any

from common.store.ops import Op


@dataclass(frozen=True)
class Memory:
    used_bytes: int
    max_bytes: int  # 0: unlimited

    def room_for_uploads(self, reserve: float) -> int | None:
        """Bytes uploads may still add, keeping `reserve` (a share of maxmemory) free for
        the workers' writes; None without a limit."""
        if not self.max_bytes:
            return None
        return int(self.max_bytes * (1 - reserve)) - self.used_bytes


def usage() -> Op[Memory]:
    def parse(info: Any) -> Memory:
        return Memory(int(info["used_memory"]), int(info.get("maxmemory", 0)))

    return Op(lambda client: client.info("memory"), parse)
