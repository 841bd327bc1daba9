"""Run ``medic serve`` as a real process (the console script), for crash and e2e tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.servers.process import ManagedProcess, free_port, http_ok

REPO = Path(__file__).resolve().parents[2]


class MedicProcess:
    def __init__(self, tmp: Path, env: dict[str, str], *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        medic = Path(sys.executable).with_name("medic")
        base = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")}
        base.update(
            {
                "MEDIC_HOST": "127.0.0.1",
                "MEDIC_PORT": str(self.port),
                "MEDIC_DATA_DIR": str(tmp / "data"),
                "MEDIC_RULES_DIR": str(REPO / "rules"),
                "MEDIC_PLAYBOOKS_DIR": str(REPO / "playbooks"),
                "MEDIC_KUBE_MODE": "off",
                "MEDIC_LOG_FORMAT": "json",
            }
        )
        base.update(env)
        self.proc = ManagedProcess("medic", [str(medic), "serve"], log_path=tmp / "medic.log", env=base)

    async def start(self) -> None:
        self.proc.start()
        await self.proc.wait_ready(lambda: http_ok(f"{self.url}/readyz"), within=20)

    async def kill(self) -> None:
        await self.proc.kill()

    async def stop(self) -> None:
        await self.proc.stop()

    def log(self) -> str:
        return self.proc.log_text()
