"""Stage 6, batch: a folder or manifest of clips in, one result line per question out, resumable.

`local` runs clips one after another in this process; `ray_workers` spreads them over Ray actors. Both
write each finished line at once, so a killed run loses nothing it finished.
"""
