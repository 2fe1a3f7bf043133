"""The bodies of the `acckv` commands: validate the options, run the library, render the result.

`cli.py` declares the commands and their options and calls `terminal.run(<module>.run, …)`; each module
here imports the library and `terminal` / `options`, never `cli.py`.
"""
