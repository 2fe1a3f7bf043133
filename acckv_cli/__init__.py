"""acckv: offline audio-video question answering with modality-aware KV-cache compression (AccKV)."""

__version__ = "0.1.0"
