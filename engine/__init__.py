"""segment-engine: customer event logs -> embeddings -> segments, lookalikes, forecasts."""

__version__ = "0.1.0"
