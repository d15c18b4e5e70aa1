"""The typed schema of serve.py's config: a wrong key or type fails at composition, naming the key."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class ServeSchema:
    bundle: str = "outputs/bundle"  # the bundle directory train.py wrote
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "cpu"  # cpu, cuda, cuda:N: where the encoder scores events
    token: str | None = None  # refused: a token on the command line is in every user's process list
    token_file: str | None = None  # a file holding the write token (else env SEGMENT_ENGINE_TOKEN)
    open_writes: bool = False  # with no token: false refuses writes (403), true lets anyone write
    bundle_root: str | None = None  # POST /reload loads bundles under this directory only; null: bundle's parent
    ledger: str | None = None  # the erasure ledger (train.py's privacy.ledger); null: erasures.jsonl beside bundle
    max_body_bytes: int = 4 * 1024 * 1024  # larger request bodies are refused (413) before they are parsed
    torch_threads: int = 1  # per process; real-time scoring of one customer does not gain from more
    log_level: str = "info"


ConfigStore.instance().store(name="serve_schema", node=ServeSchema)
