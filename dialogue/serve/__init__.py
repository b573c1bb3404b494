"""Serving full duplex to browsers: `python -m dialogue.serve` (aiohttp; `pip install 'duet[serve]'`).

`slots` is the batch engine (conversations as items of one batch), `server` the aiohttp app and its
protocol, `client` the same protocol from Python.
"""
from .slots import InputBuffer, PieceText, SlotBatch, SlotTable, StepOutput

__all__ = ["InputBuffer", "PieceText", "SlotBatch", "SlotTable", "StepOutput"]
