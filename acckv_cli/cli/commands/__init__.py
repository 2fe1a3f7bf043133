"""The bodies of the `acckv` commands: validate the options, run the library, render the result.

`cli/app.py` declares the commands and their flags and calls `terminal.run(<module>.run, …)`; each module
here imports the library stages, `terminal` and `options`, never `cli/app.py`.
"""
