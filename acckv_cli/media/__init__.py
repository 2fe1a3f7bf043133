"""Stage 1, media: a file in, frames and a waveform out, sampled as Qwen's own preprocessing samples them.

Probing (PyAV), frame decoding (decord) and Qwen's sizing rules, audio through an ffmpeg pipe, and the
official pipeline kept as a reference. Gives `decode.DecodedMedia`; knows nothing of models or methods.
"""
