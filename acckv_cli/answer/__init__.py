"""Stage 4, answer: a clip and questions in, answers from the compressed cache and retention reports out.

`ClipSession` prefills the media once under a compression method (stage 3, `methods/`), then answers each
question through that cache; `stream` does the same for long clips with a bounded cache; `inspection`
measures where attention goes without evicting anything.
"""
