"""Stage 5, evaluation: manifests (or generated SynthAVQA clips) in, scored rows and summaries out.

Runs every method and budget over every clip through `answer/`, compares each answer with the full cache's
(agreement, KL) and with the truth, and writes results.jsonl, summary.json/md and a plot.
"""
